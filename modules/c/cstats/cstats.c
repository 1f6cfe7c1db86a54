/*
 * cstats: statistics over a sample buffer, the module written in C.
 *
 * Proves the loader handles what gcc emits, not only rustc, and that a C module can use a
 * Rust module's export: it checksums its samples with crc32_compute from the crc32 module.
 * Init fills a buffer from a seeded xorshift generator, computes count/min/max/mean/median
 * and a histogram, and reports; it also exports cstats_summarize and offers the "cstats"
 * service (op 0: request = u32 LE values, reply = count, min, max (u32 each), mean*100 (u64)).
 */
#include <kmod.h>

/* gcc emits these in reverse order, like Linux modules: modinfo then lists them as Linux's do. */
MODULE_NAME("cstats");
module_param_int(samples, 1000, "number of samples (1..=65536)");
module_param_int(seed, 42, "xorshift32 seed (non-zero)");
MODULE_AUTHOR("kmodlab");
MODULE_DESCRIPTION("Sample statistics in C (uses crc32 from the Rust crc32 module)");
MODULE_LICENSE("GPL");
MODULE_VERSION("1.0");

/* From the crc32 module (a Rust module's export). */
extern uint32_t crc32_compute(const void *buf, size_t len);

struct cstats_summary {
    uint32_t count;
    uint32_t min;
    uint32_t max;
    uint64_t mean_x100;
};

#define BUCKETS 100
#define RANGE 1000

static uint32_t *sample_buf;
static size_t sample_len;

/* Summary of n values; n == 0 gives all zeroes. Exported. */
int32_t cstats_summarize(const uint32_t *v, size_t n, struct cstats_summary *out)
{
    uint64_t sum = 0;
    uint32_t min = UINT32_MAX, max = 0;

    if (out == NULL || (v == NULL && n != 0))
        return -EFAULT;
    if (n > UINT32_MAX)
        return -E2BIG;
    for (size_t i = 0; i < n; i++) {
        uint32_t x = v[i];
        sum += x;
        if (x < min)
            min = x;
        if (x > max)
            max = x;
    }
    out->count = (uint32_t)n;
    out->min = n ? min : 0;
    out->max = max;
    out->mean_x100 = n ? sum * 100 / n : 0;
    return 0;
}
/* v: n elements of 4 bytes in; out: one 24-byte struct (u32 x3, padding, u64) out. */
_Static_assert(sizeof(struct cstats_summary) == 24, "the signature below says out[24]");
EXPORT_SYMBOL_SIG(cstats_summarize, "(in[@1*4], u64, out[24]) -> i32");

static int32_t cstats_service(void *ctx, uint32_t op, const void *req, size_t req_len,
                              void *reply, size_t reply_cap, size_t *reply_len)
{
    const uint8_t *bytes = req;
    uint8_t *out = reply;
    uint32_t min = UINT32_MAX, max = 0;
    uint64_t sum = 0, mean;
    size_t n = req_len / 4;

    (void)ctx;
    if (op != 0)
        return -ENOSYS;
    if (req_len % 4 != 0)
        return -EINVAL;
    if (reply_cap < 20)
        return -EMSGSIZE;
    for (size_t i = 0; i < n; i++) {
        uint32_t x = (uint32_t)bytes[4 * i] | (uint32_t)bytes[4 * i + 1] << 8 |
                     (uint32_t)bytes[4 * i + 2] << 16 | (uint32_t)bytes[4 * i + 3] << 24;
        sum += x;
        min = x < min ? x : min;
        max = x > max ? x : max;
    }
    mean = n ? sum * 100 / n : 0;
    uint64_t fields[4] = {n, n ? min : 0, max, mean};
    for (int f = 0; f < 3; f++)
        for (int b = 0; b < 4; b++)
            out[4 * f + b] = (uint8_t)(fields[f] >> (8 * b));
    for (int b = 0; b < 8; b++)
        out[12 + b] = (uint8_t)(mean >> (8 * b));
    *reply_len = 20;
    return 0;
}

static uint32_t xorshift32(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x;
}

static int __init cstats_init(void)
{
    struct kmod_line line;
    struct cstats_summary s;
    uint32_t hist[BUCKETS];
    int64_t n = kmod_param(samples);
    uint32_t state = (uint32_t)kmod_param(seed);
    uint64_t start, cycles;
    size_t median = 0, seen = 0;
    int32_t ret;

    if (n < 1 || n > 65536 || state == 0) {
        kmod_line_start(&line, "cstats: samples=");
        kmod_line_i64(&line, n);
        kmod_line_str(&line, " seed=");
        kmod_line_i64(&line, kmod_param(seed));
        kmod_line_str(&line, ": out of range, refusing to load");
        kmod_line_end(&line);
        return -EINVAL;
    }
    sample_len = (size_t)n * sizeof(uint32_t);
    sample_buf = kmod_alloc(sample_len, 16);
    if (sample_buf == NULL)
        return -ENOMEM;

    start = kmod_cycles();
    for (int b = 0; b < BUCKETS; b++)
        hist[b] = 0;
    for (int64_t i = 0; i < n; i++) {
        sample_buf[i] = xorshift32(&state) % RANGE;
        hist[sample_buf[i] / (RANGE / BUCKETS)]++;
    }
    ret = cstats_summarize(sample_buf, (size_t)n, &s);
    /* The bucket holding the middle sample: the median to bucket precision. */
    for (int b = 0; b < BUCKETS; b++) {
        seen += hist[b];
        if (seen * 2 >= (size_t)n) {
            median = (size_t)b * (RANGE / BUCKETS);
            break;
        }
    }
    cycles = kmod_cycles() - start;
    if (ret != 0) {
        kmod_free(sample_buf, sample_len, 16);
        sample_buf = NULL;
        return ret;
    }

    kmod_line_start(&line, "cstats: ");
    kmod_line_u64(&line, s.count);
    kmod_line_str(&line, " samples (seed ");
    kmod_line_i64(&line, kmod_param(seed));
    kmod_line_str(&line, "): min ");
    kmod_line_u64(&line, s.min);
    kmod_line_str(&line, " max ");
    kmod_line_u64(&line, s.max);
    kmod_line_str(&line, " mean ");
    kmod_line_u64(&line, s.mean_x100 / 100);
    kmod_line_str(&line, ".");
    kmod_line_u64(&line, s.mean_x100 / 10 % 10);
    kmod_line_u64(&line, s.mean_x100 % 10);
    kmod_line_str(&line, " median bucket ");
    kmod_line_u64(&line, median);
    kmod_line_str(&line, " crc32 ");
    kmod_line_hex(&line, crc32_compute(sample_buf, sample_len), 8);
    kmod_line_str(&line, " (");
    kmod_line_u64(&line, cycles);
    kmod_line_str(&line, " cycles)");
    kmod_line_end(&line);

    ret = kmod_service_register("cstats", 6, cstats_service, NULL);
    if (ret != 0) {
        kmod_free(sample_buf, sample_len, 16);
        sample_buf = NULL;
        return ret;
    }
    kmod_line_start(&line, "cstats: service \"cstats\" registered");
    kmod_line_end(&line);
    return 0;
}
module_init(cstats_init);

static void __exit cstats_exit(void)
{
    struct kmod_line line;

    kmod_service_unregister("cstats", 6);
    if (sample_buf != NULL) {
        kmod_free(sample_buf, sample_len, 16);
        sample_buf = NULL;
    }
    kmod_line_start(&line, "cstats: freed ");
    kmod_line_u64(&line, sample_len);
    kmod_line_str(&line, " bytes of samples");
    kmod_line_end(&line);
}
module_exit(cstats_exit);
