//! The control channel: host-to-guest commands and guest-to-host results through shared guest
//! memory plus a doorbell port.
//!
//! The channel is [`crate::layout::CONTROL_SIZE`] bytes at [`crate::layout::CONTROL_GPA`],
//! split in two halves of [`HALF_SIZE`]: the host writes only the first, the guest only the
//! second. Each half holds one frame: a 16-byte header followed by a postcard-encoded message.
//!
//! One exchange is: the guest writes a [`GuestMsg`] frame and writes
//! [`crate::ports::DOORBELL_MESSAGE`] to [`crate::ports::DOORBELL`]; that `out` exits to the
//! VMM, which decodes and handles the frame, writes its [`HostMsg`] answer with the same
//! sequence number and resumes the guest. The guest always speaks first (its first message
//! is [`GuestMsg::Ready`]), so a whole batch of work costs one VM exit, not one per item.
//!
//! A frame holds at most [`MAX_PAYLOAD`] bytes. What can be larger travels in pieces: a
//! script's output is streamed as it is written, one [`GuestMsg::Output`] exchange per write
//! (answered [`HostMsg::Continue`]), so its size is bounded by the host's patience, not by the
//! channel; a reply that still does not fit is the guest's fault and is replaced by a
//! [`Reply::Error`] that says so.
//!
//! The VMM decodes frames written by an untrusted guest: [`decode_frame`] checks the header
//! before it reads the payload, bounds the payload by the half's size, and rejects trailing
//! bytes; it never panics (property-tested below).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{KernelConfig, KvmFlavour};

/// "KMLC", little-endian.
pub const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"KMLC");
/// Frame format version.
pub const FRAME_VERSION: u16 = 1;
/// Size of a frame header.
pub const HEADER_SIZE: usize = 16;
/// Size of each half of the channel.
pub const HALF_SIZE: usize = (crate::layout::CONTROL_SIZE / 2) as usize;
/// Offset of the host-to-guest half within the channel.
pub const HOST_TO_GUEST_OFFSET: usize = 0;
/// Offset of the guest-to-host half within the channel.
pub const GUEST_TO_HOST_OFFSET: usize = HALF_SIZE;
/// Largest payload a frame can carry.
pub const MAX_PAYLOAD: usize = HALF_SIZE - HEADER_SIZE;
/// Most text bytes one [`GuestMsg::Output`] carries: the payload less the message's own
/// encoding (a variant tag and a length prefix, 4 bytes at most at this size).
pub const MAX_OUTPUT_CHUNK: usize = MAX_PAYLOAD - 8;

/// Why a frame could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The buffer cannot even hold a header.
    TooShort {
        /// Bytes available.
        len: usize,
    },
    /// The header does not start with [`FRAME_MAGIC`].
    BadMagic {
        /// What was there instead.
        found: u32,
    },
    /// The frame was written by a different protocol version.
    BadVersion {
        /// The version in the header.
        found: u16,
    },
    /// The header's reserved field is not zero.
    BadReserved {
        /// The value found.
        found: u16,
    },
    /// The declared payload length does not fit in the buffer.
    BadLength {
        /// Declared payload length.
        len: u32,
        /// Room available after the header.
        capacity: usize,
    },
    /// The payload is not a valid message.
    Decode(postcard::Error),
    /// The payload holds a valid message followed by unexpected bytes.
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// The message does not fit (when encoding).
    Encode(postcard::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooShort { len } => {
                write!(f, "frame area of {len} bytes is shorter than a header")
            }
            FrameError::BadMagic { found } => {
                write!(
                    f,
                    "frame magic is {found:#010x}, expected {FRAME_MAGIC:#010x}"
                )
            }
            FrameError::BadVersion { found } => {
                write!(f, "frame version {found}, expected {FRAME_VERSION}")
            }
            FrameError::BadReserved { found } => {
                write!(f, "frame reserved field is {found:#x}, expected 0")
            }
            FrameError::BadLength { len, capacity } => {
                write!(
                    f,
                    "frame payload length {len} exceeds the {capacity} bytes available"
                )
            }
            FrameError::Decode(e) => write!(f, "frame payload does not decode: {e}"),
            FrameError::TrailingBytes { count } => {
                write!(f, "frame payload has {count} trailing bytes")
            }
            FrameError::Encode(e) => write!(f, "message does not encode into the frame: {e}"),
        }
    }
}

impl core::error::Error for FrameError {}

/// A frame header, as read from a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Sequence number: the guest numbers its messages, the host echoes the number.
    pub seq: u32,
    /// Payload length in bytes.
    pub len: u32,
}

impl FrameHeader {
    /// Validates the header at the start of `area` and the payload length against the room
    /// `area` has after the header.
    pub fn parse(area: &[u8]) -> Result<FrameHeader, FrameError> {
        let header: &[u8; HEADER_SIZE] = area
            .get(..HEADER_SIZE)
            .and_then(|h| h.try_into().ok())
            .ok_or(FrameError::TooShort { len: area.len() })?;
        Self::parse_header(header, area.len() - HEADER_SIZE)
    }

    /// Validates a header on its own, with `capacity` bytes of room for the payload; lets a
    /// reader copy just the header out of guest memory before deciding how much more to read.
    pub fn parse_header(h: &[u8; HEADER_SIZE], capacity: usize) -> Result<FrameHeader, FrameError> {
        let magic = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        if magic != FRAME_MAGIC {
            return Err(FrameError::BadMagic { found: magic });
        }
        let version = u16::from_le_bytes([h[4], h[5]]);
        if version != FRAME_VERSION {
            return Err(FrameError::BadVersion { found: version });
        }
        let reserved = u16::from_le_bytes([h[6], h[7]]);
        if reserved != 0 {
            return Err(FrameError::BadReserved { found: reserved });
        }
        let seq = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
        let len = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
        if len as usize > capacity {
            return Err(FrameError::BadLength { len, capacity });
        }
        Ok(FrameHeader { seq, len })
    }

    /// Total frame size (header plus payload).
    pub fn frame_len(&self) -> usize {
        HEADER_SIZE + self.len as usize
    }
}

/// Encodes `msg` as a frame at the start of `area`; returns the frame's total length.
pub fn encode_frame<T: Serialize>(area: &mut [u8], seq: u32, msg: &T) -> Result<usize, FrameError> {
    if area.len() < HEADER_SIZE {
        return Err(FrameError::TooShort { len: area.len() });
    }
    let (header, payload) = area.split_at_mut(HEADER_SIZE);
    let used = postcard::to_slice(msg, payload)
        .map_err(FrameError::Encode)?
        .len();
    header[0..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
    header[4..6].copy_from_slice(&FRAME_VERSION.to_le_bytes());
    header[6..8].copy_from_slice(&0u16.to_le_bytes());
    header[8..12].copy_from_slice(&seq.to_le_bytes());
    header[12..16].copy_from_slice(&(used as u32).to_le_bytes());
    Ok(HEADER_SIZE + used)
}

/// Decodes the frame at the start of `area`: header, bounded payload, no trailing bytes.
pub fn decode_frame<'a, T: Deserialize<'a>>(area: &'a [u8]) -> Result<(u32, T), FrameError> {
    let header = FrameHeader::parse(area)?;
    let payload = &area[HEADER_SIZE..header.frame_len()];
    let (msg, rest) = postcard::take_from_bytes(payload).map_err(FrameError::Decode)?;
    if !rest.is_empty() {
        return Err(FrameError::TrailingBytes { count: rest.len() });
    }
    Ok((header.seq, msg))
}

/// The size of `msg`'s encoding (the payload of its frame), without writing it anywhere.
pub fn encoded_len<T: Serialize>(msg: &T) -> Result<usize, FrameError> {
    postcard::serialize_with_flavor(msg, postcard::ser_flavors::Size::default())
        .map_err(FrameError::Encode)
}

/// `reply` if its [`GuestMsg::Reply`] fits a frame, else why not: the text of the
/// [`Reply::Error`] the guest sends instead, so that the VMM learns the reply was the guest's
/// to shrink (not a broken channel, not the VMM's fault).
pub fn fit_reply(reply: Reply) -> Result<Reply, String> {
    // GuestMsg::Reply's own encoding is its variant index: one byte in postcard.
    match encoded_len(&reply).map(|n| n + 1) {
        Ok(n) if n <= MAX_PAYLOAD => Ok(reply),
        Ok(n) => Err(alloc::format!(
            "the guest's reply is {n} bytes, more than the {MAX_PAYLOAD} the control channel \
             carries"
        )),
        Err(e) => Err(alloc::format!("the guest's reply does not encode: {e}")),
    }
}

/// Like [`decode_frame`] for messages that borrow nothing.
pub fn decode_owned_frame<T: DeserializeOwned>(area: &[u8]) -> Result<(u32, T), FrameError> {
    decode_frame(area)
}

/// A message from the VMM to the guest kernel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum HostMsg {
    /// Run this command and reply with [`GuestMsg::Reply`].
    Command(Command),
    /// Stop: write `status` to the exit port.
    Shutdown {
        /// The exit status the guest reports.
        status: u32,
    },
    /// Carry on with the command in progress: the answer to [`GuestMsg::Output`], and only
    /// to it.
    Continue,
}

/// A unit of work the VMM asks the guest to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Run the boot self-test and measure the basic costs.
    SelfTest(SelfTestParams),
    /// Reply with the same bytes (tests the channel).
    Echo(Vec<u8>),
    /// Deliberately misbehave, to test that the VMM contains it.
    Misbehave(Misbehaviour),
    /// Print `lines` lines of [`serial_test_line`] on the console (tests the serial path);
    /// replies [`Reply::Done`].
    PrintTestPattern {
        /// How many lines.
        lines: u32,
    },
    /// Run the guest shell (a user program): on `script`'s lines, or interactively on the
    /// serial console when `script` is `None`; replies [`Reply::Shell`].
    Shell {
        /// Shell lines separated by newlines or `;`.
        script: Option<String>,
    },
    /// Load module `lib/modules/NAME.ko` from the module archive with `params`
    /// (`key=value …`), through the same `init_module` path as `insmod`; replies
    /// [`Reply::Module`] or [`Reply::ModuleError`].
    InitModule {
        /// Module name.
        name: String,
        /// Parameters, `key=value` separated by spaces.
        params: String,
    },
    /// Unload module `name` (`delete_module`); replies [`Reply::Done`] or
    /// [`Reply::ModuleError`].
    DeleteModule {
        /// Module name.
        name: String,
    },
    /// Describe every loaded module; replies [`Reply::Modules`].
    ListModules,
    /// Load a module from these bytes (sent by the host: a module not in the archive, e.g. a
    /// deliberately malformed one); replies like [`Command::InitModule`].
    InitModuleImage {
        /// The module file.
        image: Vec<u8>,
        /// Parameters, `key=value` separated by spaces.
        params: String,
    },
    /// Report the kernel's memory accounting; replies [`Reply::Memory`].
    MemoryStats,
    /// Run an in-guest measurement with no VM exit inside its timed region; replies
    /// [`Reply::Bench`], or [`Reply::ModuleError`] with the module backend's own error when
    /// an operation it times fails (e.g. a configuration that cannot load modules yet).
    Bench(BenchRequest),
    /// Call service `service` with `op` and `request`, as a module would (`kmod_service_call`;
    /// in the microkernel the kernel calls the service's server over IPC); replies
    /// [`Reply::ServiceReply`] with at most `reply_cap` bytes, or [`Reply::ModuleError`].
    ServiceCall {
        /// Service name.
        service: String,
        /// The service's op.
        op: u32,
        /// The request.
        request: Vec<u8>,
        /// Largest reply accepted.
        reply_cap: u32,
    },
}

/// What [`Command::Bench`] measures. The guest times each operation with the TSC around the
/// module backend's functions (load, unload, service call), which both configurations
/// provide: the same request measures either.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BenchRequest {
    /// Load, then unload, a list of modules, repeatedly.
    LoadUnload(LoadBench),
    /// Send one request to a service and return its reply (the service measures something
    /// itself, e.g. the `callbench` module's call costs).
    ServiceCall(ServiceBench),
}

/// Parameters of [`BenchRequest::LoadUnload`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBench {
    /// Modules to load, in this order, as one operation (one module: `insmod`; a dependency
    /// chain: what `modprobe` loads, providers first); they are unloaded in reverse order.
    /// Modules they need that are not in the list must be LIVE already.
    pub modules: Vec<String>,
    /// Parameters (`key=value …`) of the last module of the list.
    pub params: String,
    /// Untimed rounds before the timed ones (warm caches, first-touch page faults).
    pub warmup: u32,
    /// Timed rounds.
    pub iterations: u32,
    /// Unload after each load. `false` (a module without `cleanup_module`, or a kernel
    /// without module unloading): one load, which stays.
    pub unload: bool,
}

/// Parameters of [`BenchRequest::ServiceCall`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceBench {
    /// Service name.
    pub service: String,
    /// Request op.
    pub op: u32,
    /// Request bytes.
    pub request: Vec<u8>,
    /// Room for the reply, in bytes (at most [`MAX_BENCH_REPLY`]).
    pub reply_capacity: u32,
}

/// Largest reply of a [`BenchRequest::ServiceCall`], so that the answer fits a frame.
pub const MAX_BENCH_REPLY: u32 = 256 * 1024;

/// Event counts of the guest kernel (`guest-kernel/src/stats.rs`) over a measured region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KernelCounters {
    /// System calls served (user programs and, in the microkernel, servers).
    pub syscalls: u64,
    /// IPC messages sent (requests and replies count one each).
    pub ipc_messages: u64,
    /// Payload bytes those messages carried.
    pub ipc_bytes: u64,
}

impl KernelCounters {
    /// `self - earlier`, per counter (saturating: counters only grow).
    pub fn since(&self, earlier: &KernelCounters) -> KernelCounters {
        KernelCounters {
            syscalls: self.syscalls.saturating_sub(earlier.syscalls),
            ipc_messages: self.ipc_messages.saturating_sub(earlier.ipc_messages),
            ipc_bytes: self.ipc_bytes.saturating_sub(earlier.ipc_bytes),
        }
    }
}

/// One timed round of [`BenchRequest::LoadUnload`], in TSC cycles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LoadSample {
    /// Loading every module of the list.
    pub load: u64,
    /// Unloading them (0 when the request did not unload).
    pub unload: u64,
    /// The kernel's per-step cycles of those loads, summed over the modules.
    pub steps: LoadCycles,
}

/// Result of [`BenchRequest::LoadUnload`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBenchReport {
    /// One entry per timed round.
    pub samples: Vec<LoadSample>,
    /// The modules' records as their last timed load returned them, in load order.
    pub records: Vec<ModuleRecord>,
    /// Kernel event counts over the timed rounds (all of them together).
    pub counters: KernelCounters,
}

/// Result of [`BenchRequest::ServiceCall`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceBenchReport {
    /// The service's reply.
    pub reply: Vec<u8>,
    /// TSC cycles of the whole call, as the caller saw it.
    pub cycles: u64,
    /// Kernel event counts over the call.
    pub counters: KernelCounters,
}

/// Result of [`Command::Bench`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BenchReply {
    /// Of [`BenchRequest::LoadUnload`].
    Load(LoadBenchReport),
    /// Of [`BenchRequest::ServiceCall`].
    Service(ServiceBenchReport),
}

/// The kernel's memory accounting: what a load that fails must leave unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStats {
    /// Kernel heap bytes allocated.
    pub heap_used: u64,
    /// Kernel heap size.
    pub heap_size: u64,
    /// Free physical frames.
    pub frames_free: u64,
    /// Physical frames managed.
    pub frames_total: u64,
}

/// A module's lifecycle state, as the seed article names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModuleState {
    /// Being loaded (MODULE_STATE_COMING).
    Coming,
    /// Loaded and initialised (MODULE_STATE_LIVE).
    Live,
    /// Being unloaded (MODULE_STATE_GOING).
    Going,
}

impl ModuleState {
    /// Linux's spelling (`/proc/modules`).
    pub fn name(self) -> &'static str {
        match self {
            ModuleState::Coming => "Loading",
            ModuleState::Live => "Live",
            ModuleState::Going => "Unloading",
        }
    }
}

/// TSC cycles of each step of the last load of a module, in the order they ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LoadCycles {
    /// Copying the image into a kernel buffer.
    pub copy: u64,
    /// Validating the ELF file.
    pub validate: u64,
    /// Parsing and checking parameters.
    pub params: u64,
    /// Laying out the core and init regions.
    pub layout: u64,
    /// Allocating and mapping the regions, copying the sections.
    pub allocate: u64,
    /// Resolving undefined symbols.
    pub resolve: u64,
    /// Applying relocations (and writing parameters).
    pub relocate: u64,
    /// Making the image runnable: the monolithic kernel maps its regions with their final
    /// permissions at `allocate` already and here only serialises instruction fetch; the
    /// module manager sets the server's page permissions (`task_protect`).
    pub protect: u64,
    /// Running `init_module`.
    pub init: u64,
    /// The whole `init_module` call.
    pub total: u64,
    /// Checking the module's signature (`module_sig_check`: SHA-256 of the module and one
    /// ECDSA verification), between `copy` and `validate`.
    pub verify: u64,
    /// Microkernel only: creating the module server's address space (the task, and mapping
    /// its runtime, module regions, stubs, heap and stack).
    pub aspace: u64,
    /// Microkernel only: copying the runtime and the relocated module from the manager into
    /// the server (`task_write`).
    pub transfer: u64,
    /// Microkernel only: starting the server, until its runtime asked for its configuration.
    pub start: u64,
}

/// What the kernel knows about one loaded module: its accounting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleRecord {
    /// Module name.
    pub name: String,
    /// Lifecycle state.
    pub state: ModuleState,
    /// References held by other modules (one per user).
    pub refcount: u32,
    /// Modules using this one (`modules_which_use_me`).
    pub used_by: Vec<String>,
    /// Modules this one uses.
    pub uses: Vec<String>,
    /// Base address of the core region.
    pub core_base: u64,
    /// Bytes of the core region (text, rodata, data, bss, GOT).
    pub core_bytes: u64,
    /// Bytes of the init region.
    pub init_bytes: u64,
    /// Whether the init region has been freed (after a successful init).
    pub init_freed: bool,
    /// Kernel heap bytes of bookkeeping (symbols, exports, modinfo, parameters).
    pub metadata_bytes: u64,
    /// Pages mapped for the module now.
    pub pages: u64,
    /// Relocations applied when it was loaded.
    pub relocations: u64,
    /// Cycles of each load step.
    pub load_cycles: LoadCycles,
    /// Memory the module costs, by kind.
    pub footprint: Footprint,
    /// Why the module stopped running, if it did (microkernel: its server died; the record
    /// keeps the state it had then, as Linux keeps a module whose code oopsed).
    pub fault: Option<ModuleFault>,
}

/// What one loaded module costs in memory, by kind. Each configuration fills what applies to
/// it; a zero is a measured zero (the configuration has no such cost for the module), not a
/// missing value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Footprint {
    /// Bytes of the module's own sections as laid out (core region: text, rodata, data,
    /// bss, GOT).
    pub section_bytes: u64,
    /// Pages mapped for its sections now (core, plus init until it is freed).
    pub section_pages: u64,
    /// Page-table pages that exist for this module alone (in the monolithic kernel modules
    /// share the module area's tables, which stay once allocated: 0 once the area is warm;
    /// a microkernel server's own address space has its own).
    pub page_table_pages: u64,
    /// Bytes of stacks that exist for the module (its own threads or servers).
    pub stack_bytes: u64,
    /// Bytes of kernel objects that exist for it (service registry entries; in the
    /// microkernel also its task, address space and endpoints).
    pub kernel_object_bytes: u64,
    /// Bytes of IPC buffers set up for it.
    pub ipc_buffer_bytes: u64,
    /// Heap bytes the module itself holds (its `kmod_alloc` blocks).
    pub heap_bytes: u64,
    /// Heap bytes of the kernel's bookkeeping about it (symbols, exports, modinfo,
    /// parameters).
    pub metadata_bytes: u64,
    /// Microkernel only: bytes of the server's own copy of the server runtime (its code and
    /// data), its call stubs and its `charp` parameter strings.
    pub runtime_bytes: u64,
}

impl Footprint {
    /// Every kind added up, pages counted as [`crate::layout::PAGE_SIZE`] bytes (the
    /// section bytes are inside the section pages).
    pub fn total_bytes(&self) -> u64 {
        (self.section_pages + self.page_table_pages) * crate::layout::PAGE_SIZE
            + self.stack_bytes
            + self.kernel_object_bytes
            + self.ipc_buffer_bytes
            + self.heap_bytes
            + self.metadata_bytes
            + self.runtime_bytes
    }
}

/// What a module's code was running when its server died.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultPhase {
    /// `init_module` (the module stays "Loading", as Linux leaves a module whose init oopsed).
    Init,
    /// A call into it (a service or an export; the module stays "Live", as in Linux).
    Call,
    /// `cleanup_module` (the module stays "Unloading").
    Exit,
}

/// How a module's server died (microkernel configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleFault {
    /// What it was running.
    pub during: FaultPhase,
    /// Exception vector; [`WATCHDOG_VECTOR`] if the kernel's watchdog stopped it;
    /// [`EXITED_VECTOR`] if the server runtime gave up (exited) instead of faulting.
    pub vector: u8,
    /// Instruction pointer of the fault.
    pub rip: u64,
    /// CR2 (the faulting address of a page fault).
    pub cr2: u64,
    /// Error code pushed by the CPU.
    pub error_code: u64,
    /// Offset of `rip` in the module's region that holds it, if it is in the module.
    pub offset: Option<u64>,
}

/// [`ModuleFault::vector`] of a server stopped by the kernel's watchdog (not an exception).
pub const WATCHDOG_VECTOR: u8 = 0xff;
/// [`ModuleFault::vector`] of a server whose runtime exited (a broken invariant, or a bug of
/// the runtime), rather than faulting.
pub const EXITED_VECTOR: u8 = 0xfe;

/// Why a module operation failed: the errno a system call would return, and the kernel's
/// explanation (what Linux prints to the kernel log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleError {
    /// Positive errno value.
    pub errno: i32,
    /// What went wrong, naming the module and the culprit.
    pub message: String,
}

/// What the shell printed and how its commands went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShellOutput {
    /// What the shell wrote. The kernel streams a script's output while it runs
    /// ([`GuestMsg::Output`]) and sends this empty; the VMM's `control::Script` fills it in
    /// from the stream.
    pub output: String,
    /// Bytes of output the kernel streamed for this command (what `output` must add up to).
    pub output_bytes: u64,
    /// Commands run.
    pub lines: u32,
    /// Commands that failed.
    pub failed: u32,
}

/// Line `i` of the serial test pattern: printable, position-dependent, so that a lost,
/// duplicated or reordered byte anywhere changes the text.
pub fn serial_test_line(i: u32) -> String {
    let mut line = alloc::format!("serial {i:06} ");
    let mut x = i.wrapping_mul(2_654_435_761) | 1;
    for _ in 0..48 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        line.push(char::from(b'!' + (x % 94) as u8));
    }
    line
}

/// Parameters of [`Command::SelfTest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfTestParams {
    /// Iterations of the tight loop, in each privilege level.
    pub loop_iterations: u32,
    /// How many times each measurement is repeated (the host takes medians).
    pub runs: u32,
    /// Null system calls per run of the syscall measurement.
    pub syscall_iterations: u32,
}

impl Default for SelfTestParams {
    fn default() -> Self {
        SelfTestParams {
            loop_iterations: 100_000,
            runs: 9,
            syscall_iterations: 1_000,
        }
    }
}

/// Ways the guest can be asked to misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Misbehaviour {
    /// Write bytes that are not a frame, then ring the doorbell.
    GarbageFrame,
    /// Write a frame header declaring a payload longer than the channel.
    OversizedFrame,
    /// Ring the doorbell with a value other than [`crate::ports::DOORBELL_MESSAGE`].
    BadDoorbell,
    /// Fault in supervisor mode.
    SupervisorFault(FaultKind),
    /// Fault in user mode; the kernel must survive and report it in its reply.
    UserFault(FaultKind),
    /// Loop forever in supervisor mode with interrupts off.
    Hang,
    /// Load an empty IDT and fault, so the CPU triple-faults.
    TripleFault,
}

/// Which fault to cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultKind {
    /// Read from address 0 (#PF).
    NullDereference,
    /// Execute `ud2` (#UD).
    InvalidOpcode,
    /// Divide by zero (#DE).
    DivideByZero,
    /// Execute a privileged instruction or load a bad selector (#GP).
    GeneralProtection,
    /// Recurse until the stack's guard page is hit (#PF, then #DF in supervisor mode).
    StackOverflow,
}

/// A message from the guest kernel to the VMM.
// One message exists at a time, briefly, on each side: its size does not matter, and boxing
// the module record would change every match on it.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum GuestMsg<'a> {
    /// The kernel is up and waits for its first command.
    Ready(ReadyInfo),
    /// The result of the last command.
    Reply(Reply),
    /// The kernel took a fatal exception; it stops after this message.
    Fault(FaultReport),
    /// The kernel panicked; it stops after this message.
    Panic(#[serde(borrow)] PanicReport<'a>),
    /// Output the running shell script just wrote (at most [`MAX_OUTPUT_CHUNK`] bytes; one
    /// write may take several). The VMM shows it on the console as if it came through the
    /// serial port, keeps it for the command's reply, and answers [`HostMsg::Continue`].
    Output(&'a str),
}

/// What the kernel reports when it is ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyInfo {
    /// The configuration the kernel was built as.
    pub config: KernelConfig,
    /// The KVM flavour the kernel was told it runs on.
    pub flavour: KvmFlavour,
    /// TSC at the kernel's first instruction.
    pub tsc_entry: u64,
    /// TSC when memory management was up.
    pub tsc_memory_ready: u64,
    /// TSC when the kernel sent this message.
    pub tsc_ready: u64,
    /// Sizes of the kernel image's sections.
    pub image: KernelImageInfo,
    /// Physical frames managed, and free after boot.
    pub frames_total: u64,
    /// Free frames after boot.
    pub frames_free: u64,
    /// Kernel heap size in bytes.
    pub heap_bytes: u64,
}

/// Section sizes of the running kernel image, from its linker symbols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KernelImageInfo {
    /// `.text` bytes.
    pub text: u64,
    /// `.rodata` bytes.
    pub rodata: u64,
    /// `.data` bytes.
    pub data: u64,
    /// `.bss` bytes.
    pub bss: u64,
}

/// The result of one [`Command`].
// As for GuestMsg: replies are short-lived, one at a time.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// Result of [`Command::SelfTest`].
    SelfTest(SelfTestReport),
    /// Result of [`Command::Echo`].
    Echo(Vec<u8>),
    /// A user-mode fault the kernel contained (result of [`Misbehaviour::UserFault`]).
    UserFaultContained(FaultReport),
    /// The command completed and has nothing to report.
    Done,
    /// Result of [`Command::Shell`].
    Shell(ShellOutput),
    /// A module was loaded ([`Command::InitModule`]).
    Module(ModuleRecord),
    /// Result of [`Command::ListModules`].
    Modules(Vec<ModuleRecord>),
    /// A module operation failed.
    ModuleError(ModuleError),
    /// Result of [`Command::MemoryStats`].
    Memory(MemoryStats),
    /// The command failed; the text says why.
    Error(String),
    /// Result of [`Command::Bench`].
    Bench(BenchReply),
    /// Result of [`Command::ServiceCall`]: the service's reply.
    ServiceReply(Vec<u8>),
}

/// Measurements and checks of [`Command::SelfTest`]. Cycle counts are TSC cycles, one entry
/// per run, so the host can take medians and see the spread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfTestReport {
    /// The parameters the test ran with.
    pub params: SelfTestParams,
    /// Total cycles of the tight loop in supervisor mode, per run.
    pub supervisor_loop_cycles: Vec<u64>,
    /// Total cycles of the same loop in user mode, per run.
    pub user_loop_cycles: Vec<u64>,
    /// Total cycles of `syscall_iterations` null system calls, per run.
    pub syscall_cycles: Vec<u64>,
    /// Total cycles of `syscall_iterations` null IPC round trips (a `call` answered by
    /// `reply_recv` in another task's address space), per run.
    pub ipc_cycles: Vec<u64>,
    /// Functional checks, each named, in the order they ran.
    pub checks: Vec<Check>,
    /// Whether every user-mode probe of kernel memory (reads and writes of text, data, heap,
    /// stack, TSS, another task's page, after the kernel touched them) faulted. Checks
    /// wherever something isolates the kernel (hardware KVM, or the page-table split); on
    /// kvm_pvm with the split off, the platform's behaviour is reported instead
    /// ([`Self::isolation_warning`]).
    pub user_kernel_isolation: bool,
    /// Whether user mode ran on page tables of its own (`kpti=`, see [`crate::kpti`]).
    pub kpti: bool,
    /// The kernel's one warning about what user mode could read and write, if anything.
    pub isolation_warning: Option<String>,
}

/// One functional check of the self-test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it passed (`false` also when it could not run).
    pub passed: bool,
    /// Detail for the report (what was seen).
    pub detail: String,
    /// Why the check could not run in this setup, if it could not (e.g. system calls under
    /// the hardware-KVM setup on kvm_pvm): then it is neither passed nor failed, and reports
    /// must say so rather than count it either way.
    pub not_run: Option<String>,
}

/// An exception, as the guest kernel saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FaultReport {
    /// Exception vector (0–31).
    pub vector: u8,
    /// Error code pushed by the CPU, or 0 for vectors without one.
    pub error_code: u64,
    /// Instruction pointer of the faulting instruction.
    pub rip: u64,
    /// CR2 (the faulting address, meaningful for #PF).
    pub cr2: u64,
    /// Stack pointer at the fault.
    pub rsp: u64,
    /// RFLAGS at the fault.
    pub rflags: u64,
    /// Privilege level the fault came from (0 supervisor, 3 user).
    pub cpl: u8,
}

impl FaultReport {
    /// The mnemonic of the vector (`#PF`, `#GP`, …).
    pub fn vector_name(&self) -> &'static str {
        vector_name(self.vector)
    }
}

/// The mnemonic of an exception vector.
pub fn vector_name(vector: u8) -> &'static str {
    match vector {
        0 => "#DE divide error",
        1 => "#DB debug",
        2 => "NMI",
        3 => "#BP breakpoint",
        4 => "#OF overflow",
        5 => "#BR bound range",
        6 => "#UD invalid opcode",
        7 => "#NM device not available",
        8 => "#DF double fault",
        10 => "#TS invalid TSS",
        11 => "#NP segment not present",
        12 => "#SS stack fault",
        13 => "#GP general protection",
        14 => "#PF page fault",
        16 => "#MF x87 error",
        17 => "#AC alignment check",
        18 => "#MC machine check",
        19 => "#XM SIMD error",
        20 => "#VE virtualization",
        21 => "#CP control protection",
        _ => "reserved vector",
    }
}

/// A kernel panic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PanicReport<'a> {
    /// The panic message (possibly truncated).
    pub message: &'a str,
    /// Source file of the panic.
    pub file: &'a str,
    /// Source line of the panic.
    pub line: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;

    fn roundtrip<T>(msg: &T) -> T
    where
        T: Serialize + DeserializeOwned + PartialEq + fmt::Debug,
    {
        let mut area = vec![0u8; 4096];
        let n = encode_frame(&mut area, 7, msg).unwrap();
        let (seq, back): (u32, T) = decode_owned_frame(&area[..n]).unwrap();
        assert_eq!(seq, 7);
        back
    }

    #[test]
    fn host_messages_round_trip() {
        let msgs = [
            HostMsg::Command(Command::SelfTest(SelfTestParams::default())),
            HostMsg::Command(Command::Echo(vec![1, 2, 3])),
            HostMsg::Command(Command::Misbehave(Misbehaviour::SupervisorFault(
                FaultKind::StackOverflow,
            ))),
            HostMsg::Shutdown { status: 3 },
            HostMsg::Continue,
        ];
        for m in &msgs {
            assert_eq!(&roundtrip(m), m);
        }
    }

    #[test]
    fn guest_messages_round_trip() {
        let fault = FaultReport {
            vector: 14,
            error_code: 2,
            rip: 0xffff_ffff_8020_1234,
            cr2: 0,
            rsp: 0xffff_ffff_8030_0000,
            rflags: 0x2,
            cpl: 0,
        };
        let mut area = vec![0u8; 4096];
        let msg = GuestMsg::Panic(PanicReport {
            message: "boom",
            file: "main.rs",
            line: 9,
        });
        let n = encode_frame(&mut area, 1, &msg).unwrap();
        let (_, back): (u32, GuestMsg<'_>) = decode_frame(&area[..n]).unwrap();
        assert_eq!(back, msg);
        let msg = GuestMsg::Fault(fault);
        let n = encode_frame(&mut area, 2, &msg).unwrap();
        let (_, back): (u32, GuestMsg<'_>) = decode_frame(&area[..n]).unwrap();
        assert_eq!(back, msg);
        assert_eq!(fault.vector_name(), "#PF page fault");
    }

    #[test]
    fn bench_messages_round_trip() {
        let cmd = HostMsg::Command(Command::Bench(BenchRequest::LoadUnload(LoadBench {
            modules: vec!["crc32".into(), "kvstore".into()],
            params: "keys=4".into(),
            warmup: 2,
            iterations: 10,
            unload: true,
        })));
        assert_eq!(roundtrip(&cmd), cmd);
        let cmd = HostMsg::Command(Command::Bench(BenchRequest::ServiceCall(ServiceBench {
            service: "callbench".into(),
            op: 0,
            request: vec![0, 1, 2, 3],
            reply_capacity: 64,
        })));
        assert_eq!(roundtrip(&cmd), cmd);
        let counters = KernelCounters {
            syscalls: 3,
            ipc_messages: 4,
            ipc_bytes: 100,
        };
        let record = ModuleRecord {
            name: "hello".into(),
            state: ModuleState::Live,
            refcount: 0,
            used_by: vec![],
            uses: vec![],
            core_base: 0xffff_ffff_c000_0000,
            core_bytes: 8192,
            init_bytes: 100,
            init_freed: true,
            metadata_bytes: 684,
            pages: 2,
            relocations: 13,
            load_cycles: LoadCycles {
                total: 99,
                ..Default::default()
            },
            footprint: Footprint {
                section_bytes: 8192,
                section_pages: 2,
                metadata_bytes: 684,
                ..Default::default()
            },
            fault: None,
        };
        let reply = Reply::Bench(BenchReply::Load(LoadBenchReport {
            samples: vec![LoadSample {
                load: 5,
                unload: 6,
                steps: LoadCycles::default(),
            }],
            records: vec![record],
            counters,
        }));
        assert_eq!(roundtrip(&reply), reply);
        let reply = Reply::Bench(BenchReply::Service(ServiceBenchReport {
            reply: vec![9; 16],
            cycles: 1234,
            counters,
        }));
        assert_eq!(roundtrip(&reply), reply);
    }

    #[test]
    fn counters_subtract_per_field_and_never_underflow() {
        let a = KernelCounters {
            syscalls: 10,
            ipc_messages: 5,
            ipc_bytes: 7,
        };
        let b = KernelCounters {
            syscalls: 4,
            ipc_messages: 6,
            ipc_bytes: 7,
        };
        assert_eq!(
            a.since(&b),
            KernelCounters {
                syscalls: 6,
                ipc_messages: 0,
                ipc_bytes: 0
            }
        );
    }

    #[test]
    fn footprint_totals_pages_and_bytes() {
        let f = Footprint {
            section_bytes: 5000,
            section_pages: 2,
            page_table_pages: 1,
            stack_bytes: 16384,
            kernel_object_bytes: 60,
            ipc_buffer_bytes: 4096,
            heap_bytes: 100,
            metadata_bytes: 700,
            runtime_bytes: 9000,
        };
        assert_eq!(
            f.total_bytes(),
            3 * 4096 + 16384 + 60 + 4096 + 100 + 700 + 9000
        );
    }

    #[test]
    fn the_largest_output_chunk_fits_a_frame() {
        let mut area = vec![0u8; HALF_SIZE];
        // The limit is in bytes, so text of exactly the limit is the largest message.
        let text = "x".repeat(MAX_OUTPUT_CHUNK);
        let msg = GuestMsg::Output(&text);
        let n = encode_frame(&mut area, 9, &msg).unwrap();
        assert_eq!(encoded_len(&msg).unwrap(), n - HEADER_SIZE);
        assert!(n <= HALF_SIZE);
        let (_, back): (u32, GuestMsg<'_>) = decode_frame(&area[..n]).unwrap();
        assert_eq!(back, msg);
        // One byte more than the channel carries does not fit, and `encoded_len` says why.
        let too_big = "x".repeat(MAX_PAYLOAD);
        let msg = GuestMsg::Output(&too_big);
        assert!(encoded_len(&msg).unwrap() > MAX_PAYLOAD);
        assert!(matches!(
            encode_frame(&mut area, 9, &msg),
            Err(FrameError::Encode(_))
        ));
    }

    #[test]
    fn a_reply_too_large_for_a_frame_becomes_an_error_saying_so() {
        let small = Reply::Echo(vec![1, 2, 3]);
        assert_eq!(fit_reply(small.clone()), Ok(small));
        let text = "x".repeat(MAX_PAYLOAD);
        let size = encoded_len(&GuestMsg::Reply(Reply::Error(text.clone()))).unwrap();
        // At the limit exactly it still fits.
        let overhead = encoded_len(&GuestMsg::Reply(Reply::Echo(Vec::new()))).unwrap() - 1;
        let at_limit = Reply::Echo(vec![0; MAX_PAYLOAD - overhead - 3]);
        assert_eq!(
            encoded_len(&GuestMsg::Reply(at_limit.clone())).unwrap(),
            MAX_PAYLOAD
        );
        assert_eq!(fit_reply(at_limit.clone()), Ok(at_limit));
        match fit_reply(Reply::Error(text)) {
            Err(why) => assert_eq!(
                why,
                format!(
                    "the guest's reply is {size} bytes, more than the {MAX_PAYLOAD} the \
                     control channel carries"
                )
            ),
            other => panic!("{other:?}"),
        }
        // The replacement itself fits.
        let mut area = vec![0u8; HALF_SIZE];
        let why = fit_reply(Reply::Echo(vec![0; MAX_PAYLOAD])).unwrap_err();
        assert!(encode_frame(&mut area, 1, &GuestMsg::Reply(Reply::Error(why))).is_ok());
    }

    #[test]
    fn serial_test_lines_differ_and_are_printable() {
        let a = serial_test_line(1);
        let b = serial_test_line(2);
        assert_ne!(a, b);
        assert!(a.starts_with("serial 000001 "));
        assert!(a.bytes().all(|c| (b' '..=b'~').contains(&c)), "{a}");
        assert_eq!(a.len(), 14 + 48);
    }

    #[test]
    fn header_has_documented_layout() {
        let mut area = [0u8; 64];
        let n = encode_frame(&mut area, 0x0102_0304, &HostMsg::Shutdown { status: 0 }).unwrap();
        assert_eq!(&area[0..4], b"KMLC");
        assert_eq!(area[4..6], FRAME_VERSION.to_le_bytes());
        assert_eq!(area[6..8], [0, 0]);
        assert_eq!(area[8..12], [4, 3, 2, 1]);
        assert_eq!(area[12..16], ((n - HEADER_SIZE) as u32).to_le_bytes());
    }

    #[test]
    fn rejects_garbage() {
        let mut area = vec![0u8; 256];
        let n = encode_frame(&mut area, 1, &HostMsg::Shutdown { status: 0 }).unwrap();
        let decode = |a: &[u8]| decode_owned_frame::<HostMsg>(a).map(|(_, m)| m);

        assert_eq!(decode(&area[..3]), Err(FrameError::TooShort { len: 3 }));
        let mut bad = area.clone();
        bad[0] = b'X';
        assert!(matches!(decode(&bad), Err(FrameError::BadMagic { .. })));
        let mut bad = area.clone();
        bad[4] = 2;
        assert_eq!(decode(&bad), Err(FrameError::BadVersion { found: 2 }));
        let mut bad = area.clone();
        bad[6] = 1;
        assert_eq!(decode(&bad), Err(FrameError::BadReserved { found: 1 }));
        let mut bad = area.clone();
        bad[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&bad), Err(FrameError::BadLength { .. })));
        let mut bad = area.clone();
        bad[HEADER_SIZE] = 0xff; // no such variant
        assert!(matches!(decode(&bad), Err(FrameError::Decode(_))));
        let mut bad = area.clone();
        bad[12..16].copy_from_slice(&((n - HEADER_SIZE + 2) as u32).to_le_bytes());
        assert_eq!(decode(&bad), Err(FrameError::TrailingBytes { count: 2 }));
    }

    #[test]
    fn encoding_refuses_messages_larger_than_the_area() {
        let mut area = vec![0u8; 64];
        let big = HostMsg::Command(Command::Echo(vec![0; 100]));
        assert!(matches!(
            encode_frame(&mut area, 0, &big),
            Err(FrameError::Encode(_))
        ));
        assert!(matches!(
            encode_frame(&mut area[..4], 0, &big),
            Err(FrameError::TooShort { .. })
        ));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_owned_frame::<HostMsg>(&bytes);
            let _ = decode_frame::<GuestMsg<'_>>(&bytes);
        }

        #[test]
        fn decoding_valid_headers_with_random_payloads_never_panics(
            seq in any::<u32>(),
            payload in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let mut area = vec![0u8; HEADER_SIZE];
            area[0..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
            area[4..6].copy_from_slice(&FRAME_VERSION.to_le_bytes());
            area[8..12].copy_from_slice(&seq.to_le_bytes());
            area[12..16].copy_from_slice(&(payload.len() as u32).to_le_bytes());
            area.extend_from_slice(&payload);
            let _ = decode_frame::<GuestMsg<'_>>(&area);
        }

        #[test]
        fn echo_round_trips(data in proptest::collection::vec(any::<u8>(), 0..1024), seq in any::<u32>()) {
            let mut area = vec![0u8; 2048];
            let n = encode_frame(&mut area, seq, &Reply::Echo(data.clone())).unwrap();
            let (s, back): (u32, Reply) = decode_owned_frame(&area[..n]).unwrap();
            prop_assert_eq!(s, seq);
            prop_assert_eq!(back, Reply::Echo(data));
        }
    }
}
