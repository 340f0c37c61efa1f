/*
 * relay.c: a small contract that sends an inline action and reacts to notifications, so that
 * the chain's inline-action and notification paths have a real contract to run.
 *
 * Action `pay(name to, asset quantity)`: sends `eosio.token::transfer` from this account to `to`
 * with memo "relay", authorised by `<self>@active` (the chain must find `<self>@eosio.code` in
 * that permission, as Antelope requires). On an `eosio.token::transfer` notification it prints
 * "relay notified". Built like token.c (CDT shape: only `apply` exported, memory private).
 */

typedef unsigned long long u64;
typedef unsigned int u32;
typedef unsigned char u8;

#define IMPORT(name) __attribute__((import_module("env"), import_name(#name)))

IMPORT(read_action_data) u32 read_action_data(void *msg, u32 len);
IMPORT(action_data_size) u32 action_data_size(void);
IMPORT(require_auth) void require_auth(u64 name);
IMPORT(eosio_assert) void eosio_assert(u32 test, const char *msg);
IMPORT(send_inline) void send_inline(const void *action, u32 len);
IMPORT(prints) void prints(const char *msg);
IMPORT(memcpy) void *memcpy(void *dest, const void *src, u32 len);

#define N_PAY 0xa9bc000000000000ULL
#define N_ACTIVE 0x3232eda800000000ULL
#define N_TOKEN 0x5530ea033482a600ULL
#define N_TRANSFER 0xcdcd3c2d57000000ULL

static u8 *put(u8 *p, const void *src, u32 n) {
    memcpy(p, src, n);
    return p + n;
}

static void pay(u64 self) {
    u8 data[24];
    eosio_assert(action_data_size() == sizeof data, "pay takes (name to, asset quantity)");
    read_action_data(data, sizeof data);
    require_auth(self);

    static const char memo[] = "relay";
    u8 action[8 + 8 + 1 + 16 + 1 + 8 + 8 + 16 + 1 + 5];
    u64 token = N_TOKEN, transfer = N_TRANSFER, active = N_ACTIVE;
    u8 one = 1, data_len = 8 + 8 + 16 + 1 + 5, memo_len = 5;
    u8 *p = action;
    p = put(p, &token, 8);
    p = put(p, &transfer, 8);
    p = put(p, &one, 1); /* one authorization: self@active */
    p = put(p, &self, 8);
    p = put(p, &active, 8);
    p = put(p, &data_len, 1);
    p = put(p, &self, 8);     /* from */
    p = put(p, data, 8);      /* to */
    p = put(p, data + 8, 16); /* quantity */
    p = put(p, &memo_len, 1);
    p = put(p, memo, 5);
    send_inline(action, (u32)(p - action));
    prints("relay sent");
}

__attribute__((export_name("apply"))) void apply(u64 receiver, u64 code, u64 action) {
    if (code == receiver && action == N_PAY) {
        pay(receiver);
    } else if (code == N_TOKEN && action == N_TRANSFER) {
        prints("relay notified");
    }
}
