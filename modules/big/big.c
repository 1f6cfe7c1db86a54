/*
 * big: the large module, for relocation throughput. Its bulk (big_gen.s: thousands of
 * functions, over 100 000 relocations of mixed types) is generated at build time by
 * crates/kmodlab-build/src/bigmod.rs from a fixed seed; this driver proves after loading that
 * every kind of relocated reference points where it must: it calls every generated function
 * through a table of absolute addresses, follows a table of section-relative pointers and
 * two tables of PC-relative offsets, and compares each sum with the one the generator
 * computed.
 */
#include <kmod.h>

/* gcc emits these in reverse order, like Linux modules: modinfo then lists them as Linux's do. */
MODULE_NAME("big");
module_param_int(rounds, 1, "how many times init runs every check (1..=1000)");
MODULE_AUTHOR("kmodlab");
MODULE_DESCRIPTION("Generated module with over 100000 relocations of mixed types");
MODULE_LICENSE("GPL");
MODULE_VERSION("1.0");

typedef uint64_t (*big_fn)(void);

extern const big_fn big_fn_table[];
extern const uint64_t *const big_ptr_table[];
extern const int64_t big_pc64_table[];
extern const int32_t big_pc32_table[];
extern const uint64_t big_fn_count, big_value_count;
extern const uint64_t big_expected_fn_sum, big_expected_ptr_sum, big_expected_pc_sum;
extern const uint64_t big_generated_relocations;

static void report(const char *what, uint64_t n, uint64_t got, uint64_t want)
{
    struct kmod_line line;

    kmod_line_start(&line, "big: ");
    kmod_line_str(&line, what);
    kmod_line_str(&line, ": ");
    kmod_line_u64(&line, n);
    kmod_line_str(&line, " entries, sum ");
    kmod_line_hex(&line, got, 16);
    kmod_line_str(&line, got == want ? " ok" : " MISMATCH, expected ");
    if (got != want)
        kmod_line_hex(&line, want, 16);
    kmod_line_end(&line);
}

static int __init big_init(void)
{
    struct kmod_line line;
    int64_t rounds = kmod_param(rounds);
    uint64_t fn_sum = 0, ptr_sum = 0, pc_sum = 0, start, cycles;

    if (rounds < 1 || rounds > 1000) {
        kmod_line_start(&line, "big: rounds=");
        kmod_line_i64(&line, rounds);
        kmod_line_str(&line, " is out of range 1..=1000");
        kmod_line_end(&line);
        return -EINVAL;
    }
    start = kmod_cycles();
    for (int64_t r = 0; r < rounds; r++) {
        fn_sum = ptr_sum = pc_sum = 0;
        for (uint64_t i = 0; i < big_fn_count; i++)
            fn_sum += big_fn_table[i]();
        for (uint64_t k = 0; k < big_value_count; k++) {
            ptr_sum += *big_ptr_table[k];
            pc_sum += *(const uint64_t *)((const char *)&big_pc64_table[k] + big_pc64_table[k]);
            pc_sum += *(const uint64_t *)((const char *)&big_pc32_table[k] + big_pc32_table[k]);
        }
    }
    cycles = kmod_cycles() - start;
    report("functions", big_fn_count, fn_sum, big_expected_fn_sum);
    report("pointers", big_value_count, ptr_sum, big_expected_ptr_sum);
    report("pc-relative", 2 * big_value_count, pc_sum, big_expected_pc_sum);
    kmod_line_start(&line, "big: ");
    kmod_line_u64(&line, big_generated_relocations);
    kmod_line_str(&line, " generated relocations checked in ");
    kmod_line_i64(&line, rounds);
    kmod_line_str(&line, " round(s), ");
    kmod_line_u64(&line, cycles);
    kmod_line_str(&line, " cycles");
    kmod_line_end(&line);
    if (fn_sum != big_expected_fn_sum || ptr_sum != big_expected_ptr_sum ||
        pc_sum != big_expected_pc_sum)
        return -EIO;
    return 0;
}
module_init(big_init);

static void __exit big_exit(void)
{
    struct kmod_line line;

    kmod_line_start(&line, "big: unloaded");
    kmod_line_end(&line);
}
module_exit(big_exit);
