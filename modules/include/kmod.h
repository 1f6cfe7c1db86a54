/*
 * kmod.h - the kmodlab module API for modules written in C.
 *
 * The C mirror of modules/kmod-api (Rust): the same kernel API, the same ABI (modules/ABI.md)
 * for entry points, .modinfo, parameters and exports. The kernel API block below is
 * generated from kmod-api's for_each_kernel_api! list; a host test in crates/kmod-tools
 * (tests/c_header.rs) fails when they disagree (KMODLAB_BLESS=1 rewrites the block).
 *
 * Build flags (crates/kmodlab-build): gcc -ffreestanding -fno-pic -mcmodel=kernel
 * -mno-red-zone -mno-sse -mno-mmx -fno-asynchronous-unwind-tables -fno-stack-protector -O2 -c
 */
#ifndef KMODLAB_KMOD_H
#define KMODLAB_KMOD_H

#include <stddef.h>
#include <stdint.h>

/* A service's request handler; see kmod_service_call. */
typedef int32_t (*kmod_service_handler_t)(void *ctx, uint32_t op, const void *req,
                                          size_t req_len, void *reply, size_t reply_cap,
                                          size_t *reply_len);

/* BEGIN KERNEL API (generated; do not edit by hand) */
/*
 * Console: appends `msg[..len]` to the kernel log. `println!` sends one whole line
 * (ending in `\n`) per call, so lines of concurrent modules don't interleave.
 */
void kmod_print(const void *msg, size_t len);
/*
 * Memory: allocates `size` bytes aligned to `align` (a power of two, at most
 * 4096), zero-filled; returns null when out of memory or on a bad `align`/`size`
 * (`size` 0 is bad). The memory belongs to the calling module until freed.
 */
void *kmod_alloc(size_t size, size_t align);
/*
 * Memory: frees a block from `kmod_alloc`, given the same `size` and `align`.
 * Null is ignored.
 */
void kmod_free(void *ptr, size_t size, size_t align);
/*
 * Time: the CPU's cycle counter (`rdtsc`), for measurements inside modules.
 */
uint64_t kmod_cycles(void);
/*
 * Modules: loads module `name[..name_len]` (and what it depends on, from
 * `modules.dep`) unless it is loaded already, like Linux's `request_module`.
 * 0 when it is (now) live, else `-errno` (`-ENOENT`: no such module).
 */
int32_t kmod_request_module(const void *name, size_t name_len);
/*
 * Services: registers `handler` (called with `ctx`) under `name[..name_len]`.
 * `-EEXIST` if the name is taken, `-EINVAL` for an empty name or one longer than
 * 64 bytes. The kernel drops a module's services when the module is unloaded.
 */
int32_t kmod_service_register(const void *name, size_t name_len, kmod_service_handler_t handler, void *ctx);
/*
 * Services: removes the caller's service `name[..name_len]`; `-ENOENT` if it
 * has none of that name. Handles to it then fail with `-ENOENT`.
 */
int32_t kmod_service_unregister(const void *name, size_t name_len);
/*
 * Services: finds service `name[..name_len]` and stores a handle in `*handle`.
 * `-ENOENT` if no such service is registered.
 */
int32_t kmod_service_lookup(const void *name, size_t name_len, uint64_t *handle);
/*
 * Services: sends request `op` with `req[..req_len]` to the service behind
 * `handle`; its reply (at most `reply_cap` bytes) lands in `reply`, its length in
 * `*reply_len`. Returns the handler's status, or `-ENOENT` for a stale or bad
 * handle, `-EMSGSIZE` if the handler claimed a longer reply than `reply_cap`.
 * In the monolithic kernel a direct call; in the microkernel an IPC round trip.
 */
int32_t kmod_service_call(uint64_t handle, uint32_t op, const void *req, size_t req_len, void *reply, size_t reply_cap, size_t *reply_len);
/* END KERNEL API */

/* Error numbers (Linux's values, glibc's texts); kernel API calls and init return them
 * negated. */
/* BEGIN ERRNO (generated from kmod_api::errno; do not edit by hand) */
#define EPERM 1 /* Operation not permitted */
#define ENOENT 2 /* No such file or directory */
#define ESRCH 3 /* No such process */
#define EINTR 4 /* Interrupted system call */
#define EIO 5 /* Input/output error */
#define ENXIO 6 /* No such device or address */
#define E2BIG 7 /* Argument list too long */
#define ENOEXEC 8 /* Exec format error */
#define EBADF 9 /* Bad file descriptor */
#define ECHILD 10 /* No child processes */
#define EAGAIN 11 /* Resource temporarily unavailable */
#define ENOMEM 12 /* Cannot allocate memory */
#define EACCES 13 /* Permission denied */
#define EFAULT 14 /* Bad address */
#define ENOTBLK 15 /* Block device required */
#define EBUSY 16 /* Device or resource busy */
#define EEXIST 17 /* File exists */
#define EXDEV 18 /* Invalid cross-device link */
#define ENODEV 19 /* No such device */
#define ENOTDIR 20 /* Not a directory */
#define EISDIR 21 /* Is a directory */
#define EINVAL 22 /* Invalid argument */
#define ENFILE 23 /* Too many open files in system */
#define EMFILE 24 /* Too many open files */
#define ENOTTY 25 /* Inappropriate ioctl for device */
#define ETXTBSY 26 /* Text file busy */
#define EFBIG 27 /* File too large */
#define ENOSPC 28 /* No space left on device */
#define ESPIPE 29 /* Illegal seek */
#define EROFS 30 /* Read-only file system */
#define EMLINK 31 /* Too many links */
#define EPIPE 32 /* Broken pipe */
#define EDOM 33 /* Numerical argument out of domain */
#define ERANGE 34 /* Numerical result out of range */
#define EDEADLK 35 /* Resource deadlock avoided */
#define ENAMETOOLONG 36 /* File name too long */
#define ENOLCK 37 /* No locks available */
#define ENOSYS 38 /* Function not implemented */
#define ENOTEMPTY 39 /* Directory not empty */
#define ELOOP 40 /* Too many levels of symbolic links */
#define ENOMSG 42 /* No message of desired type */
#define EIDRM 43 /* Identifier removed */
#define ECHRNG 44 /* Channel number out of range */
#define EL2NSYNC 45 /* Level 2 not synchronized */
#define EL3HLT 46 /* Level 3 halted */
#define EL3RST 47 /* Level 3 reset */
#define ELNRNG 48 /* Link number out of range */
#define EUNATCH 49 /* Protocol driver not attached */
#define ENOCSI 50 /* No CSI structure available */
#define EL2HLT 51 /* Level 2 halted */
#define EBADE 52 /* Invalid exchange */
#define EBADR 53 /* Invalid request descriptor */
#define EXFULL 54 /* Exchange full */
#define ENOANO 55 /* No anode */
#define EBADRQC 56 /* Invalid request code */
#define EBADSLT 57 /* Invalid slot */
#define EBFONT 59 /* Bad font file format */
#define ENOSTR 60 /* Device not a stream */
#define ENODATA 61 /* No data available */
#define ETIME 62 /* Timer expired */
#define ENOSR 63 /* Out of streams resources */
#define ENONET 64 /* Machine is not on the network */
#define ENOPKG 65 /* Package not installed */
#define EREMOTE 66 /* Object is remote */
#define ENOLINK 67 /* Link has been severed */
#define EADV 68 /* Advertise error */
#define ESRMNT 69 /* Srmount error */
#define ECOMM 70 /* Communication error on send */
#define EPROTO 71 /* Protocol error */
#define EMULTIHOP 72 /* Multihop attempted */
#define EDOTDOT 73 /* RFS specific error */
#define EBADMSG 74 /* Bad message */
#define EOVERFLOW 75 /* Value too large for defined data type */
#define ENOTUNIQ 76 /* Name not unique on network */
#define EBADFD 77 /* File descriptor in bad state */
#define EREMCHG 78 /* Remote address changed */
#define ELIBACC 79 /* Can not access a needed shared library */
#define ELIBBAD 80 /* Accessing a corrupted shared library */
#define ELIBSCN 81 /* .lib section in a.out corrupted */
#define ELIBMAX 82 /* Attempting to link in too many shared libraries */
#define ELIBEXEC 83 /* Cannot exec a shared library directly */
#define EILSEQ 84 /* Invalid or incomplete multibyte or wide character */
#define ERESTART 85 /* Interrupted system call should be restarted */
#define ESTRPIPE 86 /* Streams pipe error */
#define EUSERS 87 /* Too many users */
#define ENOTSOCK 88 /* Socket operation on non-socket */
#define EDESTADDRREQ 89 /* Destination address required */
#define EMSGSIZE 90 /* Message too long */
#define EPROTOTYPE 91 /* Protocol wrong type for socket */
#define ENOPROTOOPT 92 /* Protocol not available */
#define EPROTONOSUPPORT 93 /* Protocol not supported */
#define ESOCKTNOSUPPORT 94 /* Socket type not supported */
#define EOPNOTSUPP 95 /* Operation not supported */
#define EPFNOSUPPORT 96 /* Protocol family not supported */
#define EAFNOSUPPORT 97 /* Address family not supported by protocol */
#define EADDRINUSE 98 /* Address already in use */
#define EADDRNOTAVAIL 99 /* Cannot assign requested address */
#define ENETDOWN 100 /* Network is down */
#define ENETUNREACH 101 /* Network is unreachable */
#define ENETRESET 102 /* Network dropped connection on reset */
#define ECONNABORTED 103 /* Software caused connection abort */
#define ECONNRESET 104 /* Connection reset by peer */
#define ENOBUFS 105 /* No buffer space available */
#define EISCONN 106 /* Transport endpoint is already connected */
#define ENOTCONN 107 /* Transport endpoint is not connected */
#define ESHUTDOWN 108 /* Cannot send after transport endpoint shutdown */
#define ETOOMANYREFS 109 /* Too many references: cannot splice */
#define ETIMEDOUT 110 /* Connection timed out */
#define ECONNREFUSED 111 /* Connection refused */
#define EHOSTDOWN 112 /* Host is down */
#define EHOSTUNREACH 113 /* No route to host */
#define EALREADY 114 /* Operation already in progress */
#define EINPROGRESS 115 /* Operation now in progress */
#define ESTALE 116 /* Stale file handle */
#define EUCLEAN 117 /* Structure needs cleaning */
#define ENOTNAM 118 /* Not a XENIX named type file */
#define ENAVAIL 119 /* No XENIX semaphores available */
#define EISNAM 120 /* Is a named type file */
#define EREMOTEIO 121 /* Remote I/O error */
#define EDQUOT 122 /* Disk quota exceeded */
#define ENOMEDIUM 123 /* No medium found */
#define EMEDIUMTYPE 124 /* Wrong medium type */
#define ECANCELED 125 /* Operation canceled */
#define ENOKEY 126 /* Required key not available */
#define EKEYEXPIRED 127 /* Key has expired */
#define EKEYREVOKED 128 /* Key has been revoked */
#define EKEYREJECTED 129 /* Key was rejected by service */
#define EOWNERDEAD 130 /* Owner died */
#define ENOTRECOVERABLE 131 /* State not recoverable */
#define ERFKILL 132 /* Operation not possible due to RF-kill */
#define EHWPOISON 133 /* Memory page has hardware error */
/* END ERRNO */

/* ---- Entry points (ABI.md "Entry points"), as Linux's module_init/module_exit ---- */

#define __init __attribute__((section(".init.text"), noinline))
#define __exit __attribute__((section(".exit.text"), noinline))

/* `static int __init my_init(void)`: becomes init_module (0 or -errno). */
#define module_init(fn) int init_module(void) __attribute__((alias(#fn)))
/* `static void __exit my_exit(void)`: becomes cleanup_module. */
#define module_exit(fn) void cleanup_module(void) __attribute__((alias(#fn)))

/* ---- .modinfo (ABI.md ".modinfo") ---- */

#define __KMOD_CAT2(a, b) a##b
#define __KMOD_CAT(a, b) __KMOD_CAT2(a, b)
#define __KMOD_MODINFO(tag, info)                                                          \
    static const char __KMOD_CAT(__kmod_modinfo_, __COUNTER__)[]                           \
        __attribute__((section(".modinfo"), used, aligned(1))) = tag "=" info

#define MODULE_LICENSE(x) __KMOD_MODINFO("license", x)
#define MODULE_AUTHOR(x) __KMOD_MODINFO("author", x)
#define MODULE_DESCRIPTION(x) __KMOD_MODINFO("description", x)
#define MODULE_VERSION(x) __KMOD_MODINFO("version", x)
/* Linux's modpost writes name=; kmodlab modules say it themselves. */
#define MODULE_NAME(x) __KMOD_MODINFO("name", x)

/* ---- Parameters (ABI.md "Parameters"): storage __kmod_param_NAME in .data ---- */

struct kmod_charp {
    const char *ptr;
    uint64_t len;
};

#define __KMOD_PARAM_INFO(name, type, desc)                                                \
    __KMOD_MODINFO("parmtype", #name ":" type);                                            \
    __KMOD_MODINFO("parm", #name ":" desc)

/* An i64 parameter. Read it with kmod_param(NAME). */
#define module_param_int(name, defval, desc)                                               \
    int64_t __kmod_param_##name __attribute__((section(".data"), used)) = (defval);      \
    __KMOD_PARAM_INFO(name, "int", desc)

/* A bool parameter (u8, 0 or 1). */
#define module_param_bool(name, defval, desc)                                              \
    uint8_t __kmod_param_##name __attribute__((section(".data"), used)) = (defval) ? 1 : 0; \
    __KMOD_PARAM_INFO(name, "bool", desc)

/* A string parameter: {ptr, len}; the value is not NUL-terminated. */
#define module_param_charp(name, defval, desc)                                             \
    struct kmod_charp __kmod_param_##name __attribute__((section(".data"), used)) = {     \
        (defval), sizeof(defval) - 1};                                                     \
    __KMOD_PARAM_INFO(name, "charp", desc)

/* The current value of parameter NAME (the kernel writes it before init runs). */
#define kmod_param(name) (*(volatile __typeof__(__kmod_param_##name) *)&__kmod_param_##name)

/* ---- Exports (ABI.md "Exports"), as Linux's EXPORT_SYMBOL ---- */

struct kmod_kernel_symbol {
    const void *value;
    const char *name;
};

#define EXPORT_SYMBOL(sym)                                                                 \
    static const char __kstrtab_##sym[]                                                    \
        __attribute__((section("__ksymtab_strings"), used, aligned(1))) = #sym;           \
    const struct kmod_kernel_symbol __ksymtab_##sym                                        \
        __attribute__((section("__ksymtab"), used)) = {(const void *)&sym, __kstrtab_##sym}

/*
 * EXPORT_SYMBOL plus the export's call signature (ABI.md "Export signatures"): what the
 * microkernel needs to call `sym` from another module's server. `sig` is the signature in
 * the grammar of ABI.md, without the name, for example
 *
 *     uint32_t crc32_compute(const void *buf, size_t len);
 *     EXPORT_SYMBOL_SIG(crc32_compute, "(in[@1], u64) -> u32");
 *
 *     int32_t cstats_summarize(const uint32_t *v, size_t n, struct cstats_summary *out);
 *     EXPORT_SYMBOL_SIG(cstats_summarize, "(in[@1*4], u64, out[24]) -> i32");
 *
 * The record goes into the non-loaded section .kmod_exportsig; the monolithic kernel never
 * reads it. The build checks its form; the compiler cannot check it against the prototype,
 * so write it from the prototype with care. A plain EXPORT_SYMBOL (no signature) loads in
 * the monolithic kernel only: the microkernel's manager refuses the module.
 */
#define EXPORT_SYMBOL_SIG(sym, sig)                                                        \
    EXPORT_SYMBOL(sym);                                                                    \
    __asm__(".pushsection .kmod_exportsig,\"\",@progbits\n\t"                              \
            ".ascii \"" #sym "\"\n\t"                                                      \
            ".asciz \"" sig "\"\n\t"                                                       \
            ".popsection")

/* ---- Printing helpers (header-only, no extra kernel API) ---- */

/* One log line assembled on the stack; kmod_line_end prints it with one kmod_print. */
struct kmod_line {
    char buf[240];
    size_t len;
};

static inline void kmod_line_start(struct kmod_line *l, const char *prefix)
{
    l->len = 0;
    while (*prefix && l->len < sizeof(l->buf) - 1)
        l->buf[l->len++] = *prefix++;
}

static inline void kmod_line_str(struct kmod_line *l, const char *s)
{
    while (*s && l->len < sizeof(l->buf) - 1)
        l->buf[l->len++] = *s++;
}

static inline void kmod_line_u64(struct kmod_line *l, uint64_t v)
{
    char digits[20];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0 && l->len < sizeof(l->buf) - 1)
        l->buf[l->len++] = digits[--n];
}

static inline void kmod_line_i64(struct kmod_line *l, int64_t v)
{
    if (v < 0) {
        kmod_line_str(l, "-");
        kmod_line_u64(l, (uint64_t)0 - (uint64_t)v);
    } else {
        kmod_line_u64(l, (uint64_t)v);
    }
}

/* `0x` and exactly `width` hex digits. */
static inline void kmod_line_hex(struct kmod_line *l, uint64_t v, int width)
{
    kmod_line_str(l, "0x");
    for (int i = width - 1; i >= 0 && l->len < sizeof(l->buf) - 1; i--)
        l->buf[l->len++] = "0123456789abcdef"[(v >> (4 * i)) & 0xf];
}

static inline void kmod_line_end(struct kmod_line *l)
{
    l->buf[l->len++] = '\n';
    kmod_print(l->buf, l->len);
}

#endif /* KMODLAB_KMOD_H */
