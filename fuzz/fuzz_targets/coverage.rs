//! Only with `--features coverage-report` (`fuzz/run.sh coverage`): the two symbolizer hooks
//! libFuzzer needs for `-print_full_coverage=1`, answering with the PC's offset in this
//! executable instead of a name. `coverage.py` turns the offsets into files and lines.
#![cfg(feature = "coverage-report")]
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_int, c_void};

unsafe extern "C" {
    /// Defined by the linker: where this (position-independent) executable is loaded.
    static __executable_start: u8;
}

fn offset(pc: *const c_void) -> usize {
    // Taking the address of the linker symbol reads nothing.
    let base = std::ptr::addr_of!(__executable_start) as usize;
    (pc as usize).wrapping_sub(base)
}

/// Write `s` NUL-terminated into `out` of `size` bytes.
unsafe fn put(s: &[u8], out: *mut c_char, size: usize) {
    if out.is_null() || size == 0 {
        return;
    }
    let n = s.len().min(size - 1);
    // SAFETY: libFuzzer passes a buffer of `size` bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), out.cast::<u8>(), n);
        *out.add(n) = 0;
    }
}

/// Every `%x` directive of `fmt` becomes `0x<offset>`; other characters are kept.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __sanitizer_symbolize_pc(
    pc: *mut c_void,
    fmt: *const c_char,
    out: *mut c_char,
    size: usize,
) {
    // SAFETY: libFuzzer passes a NUL-terminated format.
    let fmt = unsafe { CStr::from_ptr(fmt) }.to_bytes();
    let hex = format!("0x{:x}", offset(pc));
    let mut s = Vec::with_capacity(fmt.len() + hex.len());
    let mut i = 0;
    while i < fmt.len() {
        if fmt[i] == b'%' && i + 1 < fmt.len() {
            s.extend_from_slice(hex.as_bytes());
            i += 2;
        } else {
            s.push(fmt[i]);
            i += 1;
        }
    }
    // SAFETY: as above.
    unsafe { put(&s, out, size) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn __sanitizer_get_module_and_offset_for_pc(
    pc: *mut c_void,
    module: *mut c_char,
    module_len: usize,
    pc_offset: *mut *mut c_void,
) -> c_int {
    // SAFETY: buffers as libFuzzer passes them.
    unsafe {
        put(b"main", module, module_len);
        if !pc_offset.is_null() {
            *pc_offset = offset(pc) as *mut c_void;
        }
    }
    1
}
