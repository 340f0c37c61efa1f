//! `rempart-vcard`: a virtual PIV card (a stand-in for a YubiKey) for rempart's key-ceremony
//! tests. It runs the `piv-authenticator` applet on trussed's software platform with RAM
//! storage and plugs it into `pcscd` through vsmartcard's `vpcd` driver, so `rempart admin`
//! talks to it through the same PC/SC stack as to a real YubiKey.
//!
//! Usage: `rempart-vcard [--port 35963] [--seed HEX64]`. It connects to vpcd on
//! 127.0.0.1:PORT and serves APDUs until vpcd hangs up. Each process is a fresh card (PIN 123456,
//! PUK 12345678, the default 3DES management key); its random generator is seeded with `--seed`
//! (or from the OS when absent) so that several cards hold different keys.
//!
//! This is test support only and must never hold a real key: the store is RAM, nothing is
//! protected, and a fixed seed makes every key predictable.
//!
//! Two YubiKey behaviours the `yubikey` crate relies on are added here, in front of the applet:
//! SELECT by the 5-byte PIV RID `A0 00 00 03 08` (the applet wants its full AID) and GET VERSION
//! (INS 0xFD) answering 5.4.3 (the applet says 6.6.6, which the crate refuses). The glue also
//! handles command chaining (CLA bit 0x10) and long answers through GET RESPONSE (61xx).

use std::process::ExitCode;

use heapless::Vec as HVec;
use piv_authenticator::{Authenticator, Options};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore as _, SeedableRng as _};
use std::cell::RefCell;
use std::rc::Rc;
use trussed::backend::{Backend as _, BackendId};

use trussed::pipe::{ServiceEndpoint, TrussedChannel};
use trussed::serde_extensions::{ExtensionDispatch, ExtensionId, ExtensionImpl};
use trussed::service::ServiceResources;
use trussed::types::{Context, CoreContext};
use trussed::virt::{self, StorageConfig, StoreConfig, UserInterface};
use trussed::{ClientImplementation, Service};
use trussed_auth::AuthExtension;
use trussed_auth_backend::{AuthBackend, AuthContext, FilesystemLayout};
use trussed_chunked::ChunkedExtension;
use trussed_core::Error;
use trussed_core::api::{Reply, Request, reply, request};
use trussed_core::types::Location;
use trussed_hpke::HpkeExtension;
use trussed_staging::{StagingBackend, StagingContext};
use trussed_wrap_key_to_file::WrapKeyToFileExtension;

/// The RID that prefixes the PIV AID; what `yubikey` SELECTs.
const PIV_RID: [u8; 5] = [0xA0, 0x00, 0x00, 0x03, 0x08];
/// The full PIV AID, which the applet wants.
const PIV_AID: [u8; 11] = [0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00];
/// The version GET VERSION reports: a YubiKey 5 with the 3DES default management key.
const VERSION: [u8; 3] = [5, 4, 3];
/// The most a short answer carries before GET RESPONSE takes over.
const SHORT_LE: usize = 256;
/// The largest command (after chaining) and answer the applet handles.
const APDU_MAX: usize = 7609;

/// The platform: trussed's RAM store and UI, with a random generator seeded per card.
struct CardPlatform<'a> {
    rng: ChaCha8Rng,
    store: virt::Store<'a>,
    ui: UserInterface,
}

impl<'a> trussed::platform::Platform for CardPlatform<'a> {
    type R = ChaCha8Rng;
    type S = virt::Store<'a>;
    type UI = UserInterface;

    fn user_interface(&mut self) -> &mut Self::UI {
        &mut self.ui
    }

    fn rng(&mut self) -> &mut Self::R {
        &mut self.rng
    }

    fn store(&self) -> Self::S {
        self.store
    }
}

/// The backends the applet needs besides trussed's core one: PINs (auth) and the staging
/// extensions (chunked files, key wrapping to files, HPKE).
#[derive(Default)]
struct Dispatcher {
    auth: Option<AuthBackend>,
    staging: StagingBackend,
}

#[derive(Default)]
struct DispatchContext {
    auth: AuthContext,
    staging: StagingContext,
}

enum BackendIds {
    Auth,
    Staging,
}

enum ExtensionIds {
    Auth,
    Chunked,
    WrapKeyToFile,
    Hpke,
}

impl From<ExtensionIds> for u8 {
    fn from(id: ExtensionIds) -> u8 {
        match id {
            ExtensionIds::Auth => 0,
            ExtensionIds::Chunked => 1,
            ExtensionIds::WrapKeyToFile => 2,
            ExtensionIds::Hpke => 3,
        }
    }
}

impl TryFrom<u8> for ExtensionIds {
    type Error = Error;
    fn try_from(id: u8) -> Result<Self, Error> {
        match id {
            0 => Ok(ExtensionIds::Auth),
            1 => Ok(ExtensionIds::Chunked),
            2 => Ok(ExtensionIds::WrapKeyToFile),
            3 => Ok(ExtensionIds::Hpke),
            _ => Err(Error::FunctionNotSupported),
        }
    }
}

impl ExtensionId<AuthExtension> for Dispatcher {
    type Id = ExtensionIds;
    const ID: ExtensionIds = ExtensionIds::Auth;
}
impl ExtensionId<ChunkedExtension> for Dispatcher {
    type Id = ExtensionIds;
    const ID: ExtensionIds = ExtensionIds::Chunked;
}
impl ExtensionId<WrapKeyToFileExtension> for Dispatcher {
    type Id = ExtensionIds;
    const ID: ExtensionIds = ExtensionIds::WrapKeyToFile;
}
impl ExtensionId<HpkeExtension> for Dispatcher {
    type Id = ExtensionIds;
    const ID: ExtensionIds = ExtensionIds::Hpke;
}

impl ExtensionDispatch for Dispatcher {
    type BackendId = BackendIds;
    type Context = DispatchContext;
    type ExtensionId = ExtensionIds;

    fn core_request<P: trussed::Platform>(
        &mut self,
        backend: &BackendIds,
        ctx: &mut Context<DispatchContext>,
        request: &Request,
        resources: &mut ServiceResources<P>,
    ) -> Result<Reply, Error> {
        match backend {
            BackendIds::Auth => Err(Error::RequestNotAvailable),
            BackendIds::Staging => {
                self.staging.request(&mut ctx.core, &mut ctx.backends.staging, request, resources)
            }
        }
    }

    fn extension_request<P: trussed::Platform>(
        &mut self,
        backend: &BackendIds,
        extension: &ExtensionIds,
        ctx: &mut Context<DispatchContext>,
        request: &request::SerdeExtension,
        resources: &mut ServiceResources<P>,
    ) -> Result<reply::SerdeExtension, Error> {
        let core = &mut ctx.core;
        match (backend, extension) {
            (BackendIds::Auth, ExtensionIds::Auth) => {
                let auth = self.auth.as_mut().ok_or(Error::RequestNotAvailable)?;
                ExtensionImpl::<AuthExtension>::extension_request_serialized(
                    auth,
                    core,
                    &mut ctx.backends.auth,
                    request,
                    resources,
                )
            }
            (BackendIds::Staging, ExtensionIds::Chunked) => {
                ExtensionImpl::<ChunkedExtension>::extension_request_serialized(
                    &mut self.staging,
                    core,
                    &mut ctx.backends.staging,
                    request,
                    resources,
                )
            }
            (BackendIds::Staging, ExtensionIds::WrapKeyToFile) => {
                ExtensionImpl::<WrapKeyToFileExtension>::extension_request_serialized(
                    &mut self.staging,
                    core,
                    &mut ctx.backends.staging,
                    request,
                    resources,
                )
            }
            (BackendIds::Staging, ExtensionIds::Hpke) => {
                ExtensionImpl::<HpkeExtension>::extension_request_serialized(
                    &mut self.staging,
                    core,
                    &mut ctx.backends.staging,
                    request,
                    resources,
                )
            }
            _ => Err(Error::RequestNotAvailable),
        }
    }
}

const BACKENDS: &[BackendId<BackendIds>] =
    &[BackendId::Custom(BackendIds::Auth), BackendId::Custom(BackendIds::Staging), BackendId::Core];

/// trussed's service with the card's one endpoint.
struct Engine<'a> {
    service: Service<CardPlatform<'a>, Dispatcher>,
    endpoints: Vec<ServiceEndpoint<'a, BackendIds, DispatchContext>>,
}

/// A syscall that runs the service at once, in the calling thread. trussed's own virtual runner
/// polls from another thread with a 1 ms sleep, which makes each APDU take tens of
/// milliseconds; vpcd then sees a slow card.
#[derive(Clone)]
struct InlineSyscall<'a>(Rc<RefCell<Engine<'a>>>);

impl trussed::platform::Syscall for InlineSyscall<'_> {
    fn syscall(&mut self) {
        let mut engine = self.0.borrow_mut();
        let Engine { service, endpoints } = &mut *engine;
        service.process(endpoints);
    }
}

type Card<'a> = Authenticator<ClientImplementation<'a, InlineSyscall<'a>, Dispatcher>>;

/// Runs `f` with a fresh applet on `store`, its generator seeded with `seed`.
fn with_applet<R>(
    store: virt::Store<'_>,
    seed: [u8; 32],
    f: impl FnOnce(&mut VirtualCard<'_>) -> R,
) -> R {
    let platform =
        CardPlatform { rng: ChaCha8Rng::from_seed(seed), store, ui: UserInterface::new() };
    let dispatcher = Dispatcher {
        auth: Some(AuthBackend::new(Location::Internal, FilesystemLayout::V1)),
        staging: StagingBackend::new(),
    };
    let channel = TrussedChannel::new();
    let Some((requester, responder)) = channel.split() else {
        unreachable!("a new channel splits once");
    };
    let context = CoreContext::new(littlefs2_core::path!("piv").into());
    let engine = Engine {
        service: Service::with_dispatch(platform, dispatcher),
        endpoints: vec![ServiceEndpoint::new(responder, context, BACKENDS)],
    };
    let syscall = InlineSyscall(Rc::new(RefCell::new(engine)));
    let client = ClientImplementation::new(requester, syscall, None);
    let mut card = VirtualCard {
        piv: Authenticator::new(client, Options::default()),
        chain: None,
        pending: Vec::new(),
    };
    f(&mut card)
}

/// The APDU layer between vpcd and the applet.
struct VirtualCard<'a> {
    piv: Card<'a>,
    /// Data of a chained command received so far, with its header.
    chain: Option<([u8; 4], Vec<u8>)>,
    /// What remains of a long answer, for GET RESPONSE.
    pending: Vec<u8>,
}

fn status(sw: u16) -> Vec<u8> {
    sw.to_be_bytes().to_vec()
}

/// Serialises a command with extended lengths (the applet accepts both forms).
fn extended_apdu(header: [u8; 4], data: &[u8], le: usize) -> Vec<u8> {
    let mut out = header.to_vec();
    out.push(0);
    if !data.is_empty() {
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
    }
    if le > 0 {
        out.extend_from_slice(&(le.min(65535) as u16).to_be_bytes());
    }
    out
}

impl VirtualCard<'_> {
    /// Answers `data ‖ 9000`, or its first 256 bytes and 61xx when it is longer.
    fn answer(&mut self, mut data: Vec<u8>) -> Vec<u8> {
        if data.len() <= SHORT_LE {
            data.extend_from_slice(&[0x90, 0x00]);
            return data;
        }
        self.pending = data.split_off(SHORT_LE);
        let left = self.pending.len().min(SHORT_LE);
        data.extend_from_slice(&[0x61, if left == SHORT_LE { 0 } else { left as u8 }]);
        data
    }

    fn get_response(&mut self) -> Vec<u8> {
        if self.pending.is_empty() {
            return status(0x6985);
        }
        let rest = std::mem::take(&mut self.pending);
        self.answer(rest)
    }

    fn run(&mut self, apdu: &[u8]) -> Vec<u8> {
        if apdu.len() < 4 {
            return status(0x6700);
        }
        let (cla, ins, p1) = (apdu[0], apdu[1], apdu[2]);
        if ins == 0xC0 {
            return self.get_response();
        }
        self.pending.clear();
        let Ok(view) = iso7816::command::CommandView::try_from(apdu) else {
            return status(0x6700);
        };
        if cla & 0x10 != 0 {
            let header = [cla & !0x10, ins, p1, apdu[3]];
            let (_, buf) = self.chain.get_or_insert_with(|| (header, Vec::new()));
            if buf.len() + view.data().len() > APDU_MAX {
                self.chain = None;
                return status(0x6700);
            }
            buf.extend_from_slice(view.data());
            return status(0x9000);
        }
        if let Some((header, mut buf)) = self.chain.take() {
            buf.extend_from_slice(view.data());
            let full = extended_apdu(header, &buf, view.expected());
            return self.dispatch(&full);
        }
        self.dispatch(apdu)
    }

    fn dispatch(&mut self, apdu: &[u8]) -> Vec<u8> {
        let Ok(view) = iso7816::command::CommandView::try_from(apdu) else {
            return status(0x6700);
        };
        let (ins, p1) = (apdu[1], apdu[2]);
        let mut reply: HVec<u8, APDU_MAX> = HVec::new();
        let result = if ins == 0xA4 && p1 == 0x04 && view.data().starts_with(&PIV_RID) {
            // SELECT by the RID (or the full AID), with or without Le: select the applet by its
            // full AID, asking for the whole application property template.
            let select = extended_apdu([apdu[0], ins, p1, apdu[3]], &PIV_AID, 65535);
            match iso7816::command::CommandView::try_from(&select[..]) {
                Ok(v) => self.piv.respond(v, &mut reply),
                Err(_) => return status(0x6F00),
            }
        } else if ins == 0xFD {
            reply
                .extend_from_slice(&VERSION)
                .map_err(|_| iso7816::Status::UnspecifiedPersistentExecutionError)
        } else {
            self.piv.respond(view, &mut reply)
        };
        match result {
            Ok(()) => self.answer(reply.to_vec()),
            Err(sw) => status(u16::from(sw)),
        }
    }
}

impl vpicc::VSmartCard for VirtualCard<'_> {
    fn power_off(&mut self) {
        self.chain = None;
        self.pending.clear();
    }

    fn reset(&mut self) {
        self.chain = None;
        self.pending.clear();
    }

    fn execute(&mut self, msg: &[u8]) -> Vec<u8> {
        self.run(msg)
    }
}

struct Args {
    port: u16,
    seed: [u8; 32],
    state: Option<std::path::PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut port = vpicc::DEFAULT_PORT;
    let mut seed = None;
    let mut state = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--port" => port = value.parse().map_err(|_| format!("bad port {value:?}"))?,
            "--seed" => {
                let mut s = [0u8; 32];
                hex::decode_to_slice(&value, &mut s)
                    .map_err(|_| "--seed is 64 hex digits".to_owned())?;
                seed = Some(s);
            }
            "--state" => state = Some(std::path::PathBuf::from(value)),
            _ => {
                return Err(format!(
                    "unknown argument {arg:?}; usage: --port N --seed HEX64 --state FILE"
                ));
            }
        }
    }
    let seed = seed.unwrap_or_else(|| {
        let mut s = [0u8; 32];
        rand_core::OsRng.fill_bytes(&mut s);
        s
    });
    Ok(Args { port, seed, state })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rempart-vcard: {e}");
            return ExitCode::from(64);
        }
    };
    // pcscd may still be starting: try for a few seconds before giving up.
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], args.port));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let connection = loop {
        match vpicc::connect_socket(addr) {
            Ok(c) => break c,
            Err(e) if std::time::Instant::now() >= deadline => {
                eprintln!(
                    "rempart-vcard: cannot reach vpcd on {addr}: {e}; is pcscd running with the \
                     vpcd reader?"
                );
                return ExitCode::from(69);
            }
            // Connection refused: pcscd has not opened the port yet; retry, bounded above.
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    };
    let mut config = match &args.state {
        // A card whose keys survive its process: unplug it (stop the process) and plug it in
        // again (start it with the same file), as one does with a YubiKey.
        Some(path) => StoreConfig {
            internal: StorageConfig::filesystem(path.with_extension("internal")),
            external: StorageConfig::filesystem(path.with_extension("external")),
            volatile: StorageConfig::ram(),
        },
        None => StoreConfig::ram(),
    };
    let result = config.with_store(|store| {
        with_applet(store, args.seed, |card| {
            println!("rempart-vcard: card inserted on vpcd port {}", args.port);
            connection.run(card)
        })
    });
    match result {
        // vpcd closing the connection is the normal end.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rempart-vcard: {e}");
            ExitCode::from(1)
        }
        Ok(()) => ExitCode::SUCCESS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_card(f: impl FnOnce(&mut VirtualCard<'_>)) {
        StoreConfig::ram().with_store(|store| with_applet(store, [1; 32], f))
    }

    #[test]
    fn select_version_and_management_challenge() {
        with_card(|card| {
            let r = card.run(&[0x00, 0xA4, 0x04, 0x00, 0x05, 0xA0, 0x00, 0x00, 0x03, 0x08]);
            assert_eq!(&r[r.len() - 2..], &[0x90, 0x00], "{r:02x?}");
            assert_eq!(card.run(&[0x00, 0xFD, 0x00, 0x00, 0x00]), vec![5, 4, 3, 0x90, 0x00]);
            let r = card.run(&[0x00, 0x87, 0x03, 0x9B, 0x04, 0x7C, 0x02, 0x80, 0x00]);
            assert_eq!(&r[r.len() - 2..], &[0x90, 0x00], "{r:02x?}");
        });
    }

    #[test]
    fn long_answers_come_in_256_byte_pieces_through_get_response() {
        with_card(|card| {
            let first = card.answer((0..300u16).map(|i| i as u8).collect());
            assert_eq!(first.len(), 258);
            assert_eq!(&first[256..], &[0x61, 44]);
            let rest = card.run(&[0x00, 0xC0, 0x00, 0x00, 0x00]);
            assert_eq!(rest.len(), 46);
            assert_eq!(rest[0], 0);
            assert_eq!(&rest[44..], &[0x90, 0x00]);
            assert_eq!(card.run(&[0x00, 0xC0, 0x00, 0x00, 0x00]), vec![0x69, 0x85]);
        });
    }

    #[test]
    fn a_chained_verify_is_reassembled() {
        with_card(|card| {
            card.run(&[0x00, 0xA4, 0x04, 0x00, 0x05, 0xA0, 0x00, 0x00, 0x03, 0x08]);
            // VERIFY PIN 123456 padded with 0xFF, sent in two chained pieces.
            let pin = [0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0xFF, 0xFF];
            let first = [&[0x10, 0x20, 0x00, 0x80, 0x04][..], &pin[..4]].concat();
            assert_eq!(card.run(&first), vec![0x90, 0x00]);
            let last = [&[0x00, 0x20, 0x00, 0x80, 0x04][..], &pin[4..]].concat();
            assert_eq!(card.run(&last), vec![0x90, 0x00]);
            // A wrong PIN, unchained: refused with the tries left.
            let wrong = [&[0x00, 0x20, 0x00, 0x80, 0x08][..], b"00000000"].concat();
            assert_eq!(card.run(&wrong)[0], 0x63);
        });
    }
}
