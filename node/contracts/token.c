/*
 * token.c: the standard Antelope token contract (eosio.token) in plain C, for rempart's VM.
 *
 * Actions create, issue, retire, transfer, open and close; tables `accounts` (scope: owner) and
 * `stat` (scope: symbol code), with the rows, checks and messages of the reference token, so the
 * standard token ABI (core/abi/eosio.token.abi.json) describes it. Built in the shape CDT gives a
 * contract: only `apply` is exported and the memory is private (see build.sh). It has no libc:
 * the host provides memcpy/memset, and a bump allocator over memory.grow holds large action data.
 *
 * Build: node/contracts/build.sh (Debian clang + lld). The committed token.wasm must equal a fresh
 * build; the node's tests check it.
 */

typedef unsigned long long u64;
typedef long long i64;
typedef unsigned int u32;
typedef unsigned char u8;

#define IMPORT(name) __attribute__((import_module("env"), import_name(#name)))

IMPORT(read_action_data) u32 read_action_data(void *msg, u32 len);
IMPORT(action_data_size) u32 action_data_size(void);
IMPORT(require_auth) void require_auth(u64 name);
IMPORT(has_auth) int has_auth(u64 name);
IMPORT(require_recipient) void require_recipient(u64 name);
IMPORT(is_account) int is_account(u64 name);
IMPORT(eosio_assert) void eosio_assert(u32 test, const char *msg);
IMPORT(eosio_assert_code) void eosio_assert_code(u32 test, u64 code);
IMPORT(db_store_i64) int db_store_i64(u64 scope, u64 table, u64 payer, u64 id, const void *data, u32 len);
IMPORT(db_update_i64) void db_update_i64(int itr, u64 payer, const void *data, u32 len);
IMPORT(db_remove_i64) void db_remove_i64(int itr);
IMPORT(db_get_i64) int db_get_i64(int itr, void *data, u32 len);
IMPORT(db_find_i64) int db_find_i64(u64 code, u64 scope, u64 table, u64 id);
IMPORT(memcpy) void *memcpy(void *dest, const void *src, u32 len);

/* Names, as Antelope encodes them. */
#define N_ACCOUNTS 0x32114d4f38000000ULL
#define N_STAT 0xc64d900000000000ULL
#define N_CREATE 0x45d46ca800000000ULL
#define N_ISSUE 0x7631a50000000000ULL
#define N_RETIRE 0xbab2eba800000000ULL
#define N_TRANSFER 0xcdcd3c2d57000000ULL
#define N_OPEN 0xa555300000000000ULL
#define N_CLOSE 0x4469850000000000ULL
#define N_EOSIO 0x5530ea0000000000ULL
#define N_ONERROR 0xa4d57bd2e0000000ULL

/* The error code CDT's dispatcher asserts with when no action matches. */
#define NO_ACTION_MATCHED 8000000000000000000ULL

#define MAX_AMOUNT ((1LL << 62) - 1)

static void check(int test, const char *msg) {
    if (!test) eosio_assert(0, msg);
}

/* ---- memory: a bump allocator over memory.grow, for action data larger than the stack ---- */

extern u8 __heap_base;
static u32 heap_top;

static void *allocate(u32 size) {
    if (heap_top == 0) heap_top = (u32)&__heap_base;
    u32 start = (heap_top + 7u) & ~7u;
    u32 end = start + size;
    check(end >= start, "failed to allocate pages");
    u32 have = (u32)__builtin_wasm_memory_size(0) * 65536u;
    if (end > have) {
        u32 pages = (end - have + 65535u) / 65536u;
        check(__builtin_wasm_memory_grow(0, pages) != (unsigned long)-1, "failed to allocate pages");
    }
    heap_top = end;
    return (void *)start;
}

/* ---- action data: a datastream that asserts "read" past its end, as CDT's does ---- */

typedef struct {
    const u8 *pos;
    const u8 *end;
} stream;

static void need(stream *s, u32 n) {
    check((u32)(s->end - s->pos) >= n, "read");
}

static u64 read_u64(stream *s) {
    u64 v;
    need(s, 8);
    memcpy(&v, s->pos, 8);
    s->pos += 8;
    return v;
}

static u32 read_varuint32(stream *s) {
    u32 v = 0;
    int shift = 0;
    for (;;) {
        need(s, 1);
        u8 b = *s->pos++;
        v |= (u32)(b & 0x7f) << shift;
        if (!(b & 0x80)) break;
        shift += 7;
        check(shift < 35, "read");
    }
    return v;
}

/* A string's length; its bytes are skipped (only the memo length matters). */
static u32 read_string_len(stream *s) {
    u32 n = read_varuint32(s);
    need(s, n);
    s->pos += n;
    return n;
}

typedef struct {
    i64 amount;
    u64 symbol; /* precision in the low byte, symbol code above it */
} asset;

static asset read_asset(stream *s) {
    asset a;
    a.amount = (i64)read_u64(s);
    a.symbol = read_u64(s);
    return a;
}

/* ---- symbols and assets, with CDT's checks ---- */

static u64 sym_code(u64 symbol) { return symbol >> 8; }

static int sym_code_valid(u64 code) {
    for (int i = 0; i < 7; i++) {
        u8 c = code & 0xff;
        if (!('A' <= c && c <= 'Z')) return 0;
        code >>= 8;
        if (!(code & 0xff)) {
            do {
                code >>= 8;
                if (code & 0xff) return 0;
                i++;
            } while (i < 7);
        }
    }
    return 1;
}

static int sym_valid(u64 symbol) { return sym_code_valid(sym_code(symbol)); }

static int asset_valid(asset a) {
    return -MAX_AMOUNT <= a.amount && a.amount <= MAX_AMOUNT && sym_valid(a.symbol);
}

static void asset_add(asset *a, asset b) {
    check(a->symbol == b.symbol, "attempt to add asset with different symbol");
    a->amount += b.amount;
    check(-MAX_AMOUNT <= a->amount, "addition underflow");
    check(a->amount <= MAX_AMOUNT, "addition overflow");
}

static void asset_sub(asset *a, asset b) {
    check(a->symbol == b.symbol, "attempt to subtract asset with different symbol");
    a->amount -= b.amount;
    check(-MAX_AMOUNT <= a->amount, "subtraction underflow");
    check(a->amount <= MAX_AMOUNT, "subtraction overflow");
}

/* ---- tables ---- */

typedef struct {
    asset supply;
    asset max_supply;
    u64 issuer;
} stats_row;

typedef struct {
    asset balance;
} account_row;

static u64 self;

/* Finds a row of this contract; returns its iterator (negative when absent) and reads it. */
static int find_row(u64 scope, u64 table, u64 id, void *row, u32 size) {
    int itr = db_find_i64(self, scope, table, id);
    if (itr >= 0) {
        int got = db_get_i64(itr, row, size);
        check(got == (int)size, "read");
    }
    return itr;
}

static void sub_balance(u64 owner, asset value) {
    account_row from;
    int itr = find_row(owner, N_ACCOUNTS, sym_code(value.symbol), &from, sizeof from);
    check(itr >= 0, "no balance object found");
    check(from.balance.amount >= value.amount, "overdrawn balance");
    asset_sub(&from.balance, value);
    db_update_i64(itr, owner, &from, sizeof from);
}

static void add_balance(u64 owner, asset value, u64 ram_payer) {
    account_row to;
    int itr = find_row(owner, N_ACCOUNTS, sym_code(value.symbol), &to, sizeof to);
    if (itr < 0) {
        to.balance = value;
        db_store_i64(owner, N_ACCOUNTS, ram_payer, sym_code(value.symbol), &to, sizeof to);
    } else {
        asset_add(&to.balance, value);
        db_update_i64(itr, 0, &to, sizeof to);
    }
}

/* ---- actions ---- */

static void create(stream *s) {
    u64 issuer = read_u64(s);
    asset maximum_supply = read_asset(s);
    require_auth(self);
    check(sym_valid(maximum_supply.symbol), "invalid symbol name");
    check(asset_valid(maximum_supply), "invalid supply");
    check(maximum_supply.amount > 0, "max-supply must be positive");
    u64 code = sym_code(maximum_supply.symbol);
    stats_row st;
    check(find_row(code, N_STAT, code, &st, sizeof st) < 0, "token with symbol already exists");
    st.supply.amount = 0;
    st.supply.symbol = maximum_supply.symbol;
    st.max_supply = maximum_supply;
    st.issuer = issuer;
    db_store_i64(code, N_STAT, self, code, &st, sizeof st);
}

static void issue(stream *s) {
    u64 to = read_u64(s);
    asset quantity = read_asset(s);
    u32 memo = read_string_len(s);
    check(sym_valid(quantity.symbol), "invalid symbol name");
    check(memo <= 256, "memo has more than 256 bytes");
    u64 code = sym_code(quantity.symbol);
    stats_row st;
    int itr = find_row(code, N_STAT, code, &st, sizeof st);
    check(itr >= 0, "token with symbol does not exist, create token before issue");
    check(to == st.issuer, "tokens can only be issued to issuer account");
    require_auth(st.issuer);
    check(asset_valid(quantity), "invalid quantity");
    check(quantity.amount > 0, "must issue positive quantity");
    check(quantity.symbol == st.supply.symbol, "symbol precision mismatch");
    check(quantity.amount <= st.max_supply.amount - st.supply.amount,
          "quantity exceeds available supply");
    asset_add(&st.supply, quantity);
    db_update_i64(itr, 0, &st, sizeof st);
    add_balance(st.issuer, quantity, st.issuer);
}

static void retire(stream *s) {
    asset quantity = read_asset(s);
    u32 memo = read_string_len(s);
    check(sym_valid(quantity.symbol), "invalid symbol name");
    check(memo <= 256, "memo has more than 256 bytes");
    u64 code = sym_code(quantity.symbol);
    stats_row st;
    int itr = find_row(code, N_STAT, code, &st, sizeof st);
    check(itr >= 0, "token with symbol does not exist");
    require_auth(st.issuer);
    check(asset_valid(quantity), "invalid quantity");
    check(quantity.amount > 0, "must retire positive quantity");
    check(quantity.symbol == st.supply.symbol, "symbol precision mismatch");
    asset_sub(&st.supply, quantity);
    db_update_i64(itr, 0, &st, sizeof st);
    sub_balance(st.issuer, quantity);
}

static void transfer(stream *s) {
    u64 from = read_u64(s);
    u64 to = read_u64(s);
    asset quantity = read_asset(s);
    u32 memo = read_string_len(s);
    check(from != to, "cannot transfer to self");
    require_auth(from);
    check(is_account(to), "to account does not exist");
    u64 code = sym_code(quantity.symbol);
    stats_row st;
    check(find_row(code, N_STAT, code, &st, sizeof st) >= 0, "unable to find key");
    require_recipient(from);
    require_recipient(to);
    check(asset_valid(quantity), "invalid quantity");
    check(quantity.amount > 0, "must transfer positive quantity");
    check(quantity.symbol == st.supply.symbol, "symbol precision mismatch");
    check(memo <= 256, "memo has more than 256 bytes");
    u64 payer = has_auth(to) ? to : from;
    sub_balance(from, quantity);
    add_balance(to, quantity, payer);
}

static void open(stream *s) {
    u64 owner = read_u64(s);
    u64 symbol = read_u64(s);
    u64 ram_payer = read_u64(s);
    require_auth(ram_payer);
    check(is_account(owner), "owner account does not exist");
    u64 code = sym_code(symbol);
    stats_row st;
    check(find_row(code, N_STAT, code, &st, sizeof st) >= 0, "symbol does not exist");
    check(st.supply.symbol == symbol, "symbol precision mismatch");
    account_row row;
    if (find_row(owner, N_ACCOUNTS, code, &row, sizeof row) < 0) {
        row.balance.amount = 0;
        row.balance.symbol = symbol;
        db_store_i64(owner, N_ACCOUNTS, ram_payer, code, &row, sizeof row);
    }
}

static void close(stream *s) {
    u64 owner = read_u64(s);
    u64 symbol = read_u64(s);
    require_auth(owner);
    account_row row;
    int itr = find_row(owner, N_ACCOUNTS, sym_code(symbol), &row, sizeof row);
    check(itr >= 0, "Balance row already deleted or never existed. Action won't have any effect.");
    check(row.balance.amount == 0, "Cannot close because the balance is not zero.");
    db_remove_i64(itr);
}

__attribute__((export_name("apply"))) void apply(u64 receiver, u64 code, u64 action) {
    self = receiver;
    if (code == N_EOSIO && action == N_ONERROR) {
        check(0, "onerror action's are only valid from the \"eosio\" system account");
    }
    if (code != receiver) return; /* notifications: the token handles none */

    u8 small[512];
    u32 size = action_data_size();
    u8 *buf = size <= sizeof small ? small : (u8 *)allocate(size);
    read_action_data(buf, size);
    stream s = {buf, buf + size};

    switch (action) {
    case N_CREATE: create(&s); break;
    case N_ISSUE: issue(&s); break;
    case N_RETIRE: retire(&s); break;
    case N_TRANSFER: transfer(&s); break;
    case N_OPEN: open(&s); break;
    case N_CLOSE: close(&s); break;
    default: eosio_assert_code(0, NO_ACTION_MATCHED);
    }
}
