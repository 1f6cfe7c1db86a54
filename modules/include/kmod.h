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

/* Error numbers (Linux's values); kernel API calls and init return them negated. */
#define EPERM 1
#define ENOENT 2
#define EIO 5
#define E2BIG 7
#define ENOEXEC 8
#define EAGAIN 11
#define ENOMEM 12
#define EFAULT 14
#define EBUSY 16
#define EEXIST 17
#define ENODEV 19
#define EINVAL 22
#define ENOSPC 28
#define ERANGE 34
#define ENOSYS 38
#define EOVERFLOW 75
#define EMSGSIZE 90

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
