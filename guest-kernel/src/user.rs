//! User programs: loading a static ELF executable into the user half, running it, and
//! serving its system calls.

use alloc::string::String;
use alloc::vec::Vec;

use guest_rt::{cap, errno, nr};
use kmodlab_abi::channel::FaultReport;
use kmodlab_abi::layout::PAGE_SIZE;
use object::elf::{PF_W, PF_X, PT_LOAD};
use object::read::elf::{ElfFile64, ProgramHeader};
use object::{LittleEndian, Object};

use crate::arch::{Trap, UserContext};
use crate::mm::paging::{self, USER_END, UserPerm};

/// Lowest address a program may be loaded at (keeps page 0 and its neighbours unmapped).
const USER_MIN: u64 = 0x1_0000;
/// Top of the user stack.
const USER_STACK_TOP: u64 = 0x0000_7fff_ffff_0000;
/// Pages of user stack (below it, a guard: nothing is mapped).
const USER_STACK_PAGES: u64 = 16;

/// Why a program could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The file is not a well-formed ELF64 executable.
    BadElf(object::Error),
    /// A segment is outside the user range, overlaps the stack or overflows.
    BadSegment {
        /// Virtual address of the segment.
        vaddr: u64,
    },
    /// A segment is both writable and executable.
    WritableAndExecutable {
        /// Virtual address of the segment.
        vaddr: u64,
    },
    /// The entry point is not in an executable segment.
    BadEntry(u64),
    /// Out of memory.
    NoMemory,
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LoadError::BadElf(e) => write!(f, "not a valid ELF executable: {e}"),
            LoadError::BadSegment { vaddr } => {
                write!(f, "segment at {vaddr:#x} is outside user memory")
            }
            LoadError::WritableAndExecutable { vaddr } => {
                write!(f, "segment at {vaddr:#x} is writable and executable")
            }
            LoadError::BadEntry(e) => write!(f, "entry point {e:#x} is not executable code"),
            LoadError::NoMemory => write!(f, "out of memory"),
        }
    }
}

/// A program loaded into the user half.
pub struct Program {
    entry: u64,
}

/// Loads `image` into the (empty) user half. The caller clears the user half afterwards.
pub fn load(image: &[u8]) -> Result<Program, LoadError> {
    let elf = ElfFile64::<LittleEndian>::parse(image).map_err(LoadError::BadElf)?;
    let endian = elf.endian();
    let entry = elf.entry();
    let mut entry_ok = false;
    for ph in elf.elf_program_headers() {
        if ph.p_type(endian) != PT_LOAD {
            continue;
        }
        let vaddr = ph.p_vaddr(endian);
        let memsz = ph.p_memsz(endian);
        let flags = ph.p_flags(endian);
        let end = vaddr
            .checked_add(memsz)
            .filter(|&e| vaddr >= USER_MIN && e <= USER_STACK_TOP - USER_STACK_PAGES * PAGE_SIZE)
            .ok_or(LoadError::BadSegment { vaddr })?;
        if flags.contains(PF_W) && flags.contains(PF_X) {
            return Err(LoadError::WritableAndExecutable { vaddr });
        }
        let perm = if flags.contains(PF_X) {
            UserPerm::Execute
        } else if flags.contains(PF_W) {
            UserPerm::ReadWrite
        } else {
            UserPerm::ReadOnly
        };
        if perm == UserPerm::Execute && (vaddr..end).contains(&entry) {
            entry_ok = true;
        }
        let data = ph
            .data(endian, image)
            .map_err(|_| LoadError::BadSegment { vaddr })?;
        if data.len() as u64 > memsz {
            return Err(LoadError::BadSegment { vaddr });
        }
        let first_page = vaddr & !(PAGE_SIZE - 1);
        for page in (first_page..end).step_by(PAGE_SIZE as usize) {
            let phys = paging::map_user_page(page, perm).ok_or(LoadError::NoMemory)?;
            // Copy the part of the file that falls in this page.
            let page_end = page + PAGE_SIZE;
            let copy_start = vaddr.max(page);
            let copy_end = (vaddr + data.len() as u64).min(page_end);
            if copy_start < copy_end {
                let src = &data[(copy_start - vaddr) as usize..(copy_end - vaddr) as usize];
                let dst = paging::phys_to_virt(phys) + (copy_start - page);
                // SAFETY: `dst..dst+len` lies inside the frame just mapped for this page,
                // reached through the direct map, and nothing else uses that frame yet.
                unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), dst as *mut u8, src.len()) };
            }
        }
    }
    if !entry_ok {
        return Err(LoadError::BadEntry(entry));
    }
    for i in 1..=USER_STACK_PAGES {
        paging::map_user_page(USER_STACK_TOP - i * PAGE_SIZE, UserPerm::ReadWrite)
            .ok_or(LoadError::NoMemory)?;
    }
    Ok(Program { entry })
}

/// A user-supplied `(pointer, length)` that has been checked to lie in mapped user memory.
pub struct UserSlice {
    addr: u64,
    len: usize,
}

impl UserSlice {
    /// Checks that `[addr, addr + len)` is in the user half and every page of it is mapped
    /// and user-accessible (and writable if `write`).
    pub fn new(addr: u64, len: u64, write: bool) -> Result<UserSlice, u64> {
        let end = addr.checked_add(len).ok_or(errno::EFAULT)?;
        if end > USER_END {
            return Err(errno::EFAULT);
        }
        if len == 0 {
            // An empty slice touches no memory, whatever its (possibly dangling) address.
            return Ok(UserSlice { addr, len: 0 });
        }
        let mut page = addr & !(PAGE_SIZE - 1);
        while page < end {
            match paging::translate(page) {
                Some(m) if m.user && (m.writable || !write) => {}
                _ => return Err(errno::EFAULT),
            }
            page += PAGE_SIZE;
        }
        Ok(UserSlice {
            addr,
            len: len as usize,
        })
    }

    /// Copies `data` (at most `len` bytes of it) to the user memory; returns bytes copied.
    /// The slice must have been checked writable.
    pub fn write_from(&self, data: &[u8]) -> usize {
        let n = data.len().min(self.len);
        // SAFETY: `new(.., write = true)` checked that every page of the range is mapped,
        // user-accessible and writable; the user program is stopped in a system call.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), self.addr as *mut u8, n) };
        n
    }

    /// Copies the user bytes into a kernel buffer.
    pub fn read_to_vec(&self) -> Vec<u8> {
        let mut v = alloc::vec![0u8; self.len];
        // SAFETY: `new` checked that every page of the range is mapped and user-accessible
        // in the active page tables, which cannot change while the kernel runs this call
        // (single CPU, the user program is stopped in a system call).
        unsafe { core::ptr::copy_nonoverlapping(self.addr as *const u8, v.as_mut_ptr(), self.len) };
        v
    }
}

/// How a program ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// It called `exit` with this status.
    Status(u64),
    /// It took an exception, which ended it.
    Faulted(FaultReport),
}

/// What a finished program produced.
#[derive(Debug)]
pub struct Outcome {
    /// How it ended.
    pub exit: Exit,
    /// The values it handed over with `report`, in order.
    pub reports: Vec<u64>,
}

/// Where a program's `read_input` lines come from.
pub enum Input {
    /// Nowhere: `read_input` returns end of input.
    None,
    /// This script, then end of input.
    Script(kmodlab_abi::input::ScriptInput),
    /// The serial console (interactive), until the user sends end of input (Ctrl-D).
    Console,
}

/// The environment a program runs in: its privileges, its input, where its output goes.
pub struct Session {
    /// Capability bits (`guest_rt::cap`).
    pub caps: u64,
    /// Its input.
    pub input: Input,
    /// Where its output goes instead of the serial console, if the caller wants it
    /// (a script's output streams to the VMM).
    pub capture: Option<crate::control::OutputStream>,
    /// The kernel's explanation of its last failed module operation.
    pub last_error: String,
}

impl Session {
    /// All capabilities, no input, output to the console only.
    pub fn new() -> Session {
        Session {
            caps: cap::ALL,
            input: Input::None,
            capture: None,
            last_error: String::new(),
        }
    }
}

/// Loads and runs `image` with `args` in `rdi, rsi, rdx` until it exits or faults, then
/// clears the user half.
pub fn run(image: &[u8], args: [u64; 3]) -> Result<Outcome, LoadError> {
    run_in(image, args, &mut Session::new())
}

/// Like [`run`], in `session`.
pub fn run_in(image: &[u8], args: [u64; 3], session: &mut Session) -> Result<Outcome, LoadError> {
    let loaded = load(image);
    let program = match loaded {
        Ok(p) => p,
        Err(e) => {
            paging::clear_user_half();
            return Err(e);
        }
    };
    let mut ctx = UserContext::new(program.entry, USER_STACK_TOP, args);
    let mut reports = Vec::new();
    let exit = loop {
        match ctx.run() {
            Err(_) => break Exit::Status(u64::MAX),
            Ok(Trap::Exception) => {
                break Exit::Faulted(ctx.fault.expect("an exception trap records its fault"));
            }
            Ok(Trap::Syscall) => {
                let a = [ctx.rdi, ctx.rsi, ctx.rdx, ctx.r10];
                let ret = match ctx.rax {
                    nr::NULL => Ok(0),
                    nr::EXIT => break Exit::Status(a[0]),
                    nr::REPORT => {
                        reports.push(a[0]);
                        Ok(0)
                    }
                    n => crate::syscalls::dispatch(n, a, session),
                };
                ctx.set_return(match ret {
                    Ok(v) => v,
                    Err(errno) => errno.wrapping_neg(),
                });
            }
        }
    };
    paging::clear_user_half();
    Ok(Outcome { exit, reports })
}
