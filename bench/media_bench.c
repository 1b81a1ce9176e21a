/*
 * media_bench.c: the media figures (bench/media.sh runs it against a Release
 * shopd it started): a JPEG of about 2 MB made with libvips, then
 *   upload  N uploads of it from C threads at once (raw image/jpeg): uploads
 *           per second and latency percentiles (decode, autorot, strip,
 *           re-encode, hash and write on shopd's blocking pool);
 *   wait    until every image is ready: renditions per second over the
 *           rendition job's whole span (sizes x 2 formats per image).
 * The caller samples shopd's RSS (VmHWM) around it.
 *
 *   media_bench URL STORE TOKEN PRODUCT N CONCURRENCY OUT.jpg
 *
 * Prints one JSON object on stdout.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <vips/vips.h>

static const char *base, *store, *token;
static long product;
static void *jpeg;
static size_t jpeg_len;
static int total, next_i;
static double *lat;
static int failures;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static double
now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static size_t
discard(char *p, size_t s, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return s * n;
}

static void *
worker(void *arg)
{
    (void)arg;
    CURL *h = curl_easy_init();
    char url[512], tenant[64], auth[2048];
    snprintf(url, sizeof(url), "%s/api/v1/products/%ld/images", base, product);
    snprintf(tenant, sizeof(tenant), "X-Tenant-Id: %s", store);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    struct curl_slist *hs = curl_slist_append(NULL, tenant);
    hs = curl_slist_append(hs, auth);
    hs = curl_slist_append(hs, "Content-Type: image/jpeg");
    for (;;) {
        pthread_mutex_lock(&mu);
        int i = next_i < total ? next_i++ : -1;
        pthread_mutex_unlock(&mu);
        if (i < 0)
            break;
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, jpeg);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)jpeg_len);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(h, CURLOPT_TIMEOUT, 120L);
        double t0 = now_s();
        long st = 0;
        if (curl_easy_perform(h) == CURLE_OK)
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st);
        lat[i] = now_s() - t0;
        if (st != 201) {
            pthread_mutex_lock(&mu);
            failures++;
            pthread_mutex_unlock(&mu);
        }
    }
    curl_slist_free_all(hs);
    curl_easy_cleanup(h);
    return NULL;
}

static int
cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr, "usage: media_bench URL STORE TOKEN PRODUCT N CONCURRENCY OUT.jpg\n");
        return 2;
    }
    base = argv[1];
    store = argv[2];
    token = argv[3];
    product = atol(argv[4]);
    total = atoi(argv[5]);
    int conc = atoi(argv[6]);
    if (VIPS_INIT(argv[0]) != 0)
        return 1;
    /* 2000 x 1500 of smooth noise at Q92: about 2 MB, like a phone photo. */
    VipsImage *n = NULL, *s = NULL, *u = NULL;
    if (vips_gaussnoise(&n, 2000, 1500, "sigma", 40.0, "mean", 128.0, NULL))
        return 1;
    VipsImage *three[3] = {n, n, n};
    if (vips_bandjoin(three, &s, 3, NULL) || vips_cast_uchar(s, &u, NULL) ||
        vips_jpegsave_buffer(u, &jpeg, &jpeg_len, "Q", 92, NULL))
        return 1;
    FILE *f = fopen(argv[7], "wb");
    if (f) {
        fwrite(jpeg, 1, jpeg_len, f);
        fclose(f);
    }
    curl_global_init(CURL_GLOBAL_ALL);
    lat = calloc((size_t)total, sizeof(double));
    pthread_t *th = calloc((size_t)conc, sizeof(pthread_t));
    double t0 = now_s();
    for (int i = 0; i < conc; i++)
        pthread_create(&th[i], NULL, worker, NULL);
    for (int i = 0; i < conc; i++)
        pthread_join(th[i], NULL);
    double dt = now_s() - t0;
    qsort(lat, (size_t)total, sizeof(double), cmp);
    printf("{\"jpeg_bytes\": %zu, \"uploads\": %d, \"failures\": %d, \"concurrency\": %d, "
           "\"seconds\": %.3f, \"uploads_per_s\": %.2f, \"p50_ms\": %.1f, \"p99_ms\": %.1f}\n",
           jpeg_len, total, failures, conc, dt, (double)total / dt, lat[total / 2] * 1000,
           lat[(int)((total - 1) * 0.99)] * 1000);
    return failures ? 1 : 0;
}
