//! System calls beyond the basic ones `user::run_in` serves itself: the module subsystem
//! (`init_module`, `delete_module`), and the reads a shell needs (archive files,
//! kernel-generated texts, its input).
//!
//! Every pointer argument becomes a checked [`UserSlice`] before it is touched; every
//! failure is an errno (`guest_rt::errno`).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use guest_rt::{cap, errno, nr};

#[cfg(feature = "monolithic")]
use crate::module::Image;
use crate::module::{self, Caller, ModError};
use crate::user::{Input, Session, UserSlice};

/// Longest path, module name or parameter string accepted.
const MAX_NAME: u64 = 4096;

fn string_arg(ptr: u64, len: u64) -> Result<String, u64> {
    if len > MAX_NAME {
        return Err(errno::EINVAL);
    }
    let bytes = UserSlice::new(ptr, len, false)?.read_to_vec();
    String::from_utf8(bytes).map_err(|_| errno::EINVAL)
}

/// Copies `data` to the user buffer if it fits; returns `data`'s length either way (so the
/// caller can retry with a larger buffer).
fn copy_out(data: &[u8], buf: u64, cap: u64) -> Result<u64, u64> {
    if data.len() as u64 <= cap {
        UserSlice::new(buf, data.len() as u64, true)?.write_from(data);
    }
    Ok(data.len() as u64)
}

fn module_result<T>(r: Result<T, ModError>, session: &mut Session) -> Result<u64, u64> {
    match r {
        Ok(_) => {
            session.last_error.clear();
            Ok(0)
        }
        Err(e) => {
            kprintln!("module: {e}");
            session.last_error = format!("{e}");
            Err(e.errno())
        }
    }
}

/// Serves system call `n` with arguments `a` for the program in `session`.
pub fn dispatch(n: u64, a: [u64; 4], session: &mut Session) -> Result<u64, u64> {
    let caller = Caller {
        may_manage_modules: session.caps & cap::SYS_MODULE != 0,
    };
    match n {
        nr::WRITE => {
            let bytes = UserSlice::new(a[0], a[1], false)?.read_to_vec();
            let text = String::from_utf8_lossy(&bytes);
            match session.capture.as_mut() {
                Some(stream) => stream.write(&text),
                None => crate::console::print_user(&text),
            }
            Ok(a[1])
        }
        nr::INIT_MODULE => {
            let image = UserSlice::new(a[0], a[1], false)?;
            let params = string_arg(a[2], a[3])?;
            let r = init_module(&image, &params, caller);
            module_result(r, session)
        }
        nr::DELETE_MODULE => {
            let name = string_arg(a[0], a[1])?;
            if a[2] != 0 {
                // Forced unloading (O_TRUNC) is not offered: it breaks the users' references.
                return Err(errno::EINVAL);
            }
            let r = module::delete_module(&name, caller);
            module_result(r, session)
        }
        nr::READ_FILE => {
            let path = string_arg(a[0], a[1])?;
            let archive = crate::boot::initramfs().map_err(|_| errno::ENOENT)?;
            let file = archive
                .find(path.trim_start_matches('/'))
                .ok_or(errno::ENOENT)?;
            copy_out(file.data, a[2], a[3])
        }
        nr::READ_PROC => {
            let name = string_arg(a[0], a[1])?;
            let text = proc_text(&name).ok_or(errno::ENOENT)?;
            copy_out(&text, a[2], a[3])
        }
        nr::READ_INPUT => read_input(session, a[0], a[1]),
        nr::CAP_DROP => {
            session.caps &= !a[0];
            Ok(0)
        }
        nr::LAST_ERROR => copy_out(session.last_error.as_bytes(), a[0], a[1]),
        _ => Err(errno::ENOSYS),
    }
}

#[cfg(feature = "monolithic")]
fn init_module(image: &UserSlice, params: &str, caller: Caller) -> Result<(), ModError> {
    module::init_module(Image::User(image), params, caller).map(|_| ())
}

#[cfg(not(feature = "monolithic"))]
fn init_module(_image: &UserSlice, _params: &str, _caller: Caller) -> Result<(), ModError> {
    Err(ModError::NotInThisConfiguration)
}

/// The kernel-generated texts `read_proc` serves.
fn proc_text(name: &str) -> Option<Vec<u8>> {
    Some(match name {
        "modules" => module::proc_modules().into_bytes(),
        "modules-verbose" => module::proc_modules_verbose().into_bytes(),
        "kmsg" => {
            let mut v = Vec::new();
            crate::console::read_log(&mut v);
            v
        }
        "files" => {
            let archive = crate::boot::initramfs().ok()?;
            let mut s = String::new();
            for f in archive.files() {
                s.push_str(&format!("{} {}\n", f.name, f.data.len()));
            }
            s.into_bytes()
        }
        _ => return None,
    })
}

/// Most bytes one `read_input` hands out (a longer line takes several reads).
const MAX_INPUT_READ: u64 = 64 * 1024;

/// `read_input`: at most `cap` bytes and never more than one line, like `read(2)` on a
/// terminal; the rest of a longer line stays queued for the next read, so nothing is lost.
fn read_input(session: &mut Session, buf: u64, cap: u64) -> Result<u64, u64> {
    if cap == 0 {
        // An empty read would look like the end of input.
        return Err(errno::EINVAL);
    }
    let cap = cap.min(MAX_INPUT_READ);
    let out = UserSlice::new(buf, cap, true)?;
    let n = match &mut session.input {
        Input::None => 0,
        Input::Script(script) => out.write_from(script.read(cap as usize)),
        Input::Console => out.write_from(&crate::console::read_line(cap as usize)),
    };
    Ok(n as u64)
}
