/*
 * HTTPS on the HTTP listener (issue 18), against the real binary: a
 * self-signed certificate made here with the openssl tool, curl speaking
 * HTTPS to it, Strict-Transport-Security on the answers, TLS 1.0 and 1.1
 * refused while 1.2 and 1.3 work, ALPN http/1.1, plain HTTP on the TLS port
 * answered with nothing, and SIGHUP loading a renewed certificate without
 * dropping an open keep-alive connection (a broken one keeps the old).
 */
#include <curl/curl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"

static th_server_t *srv;
static char dir[64];
static char cert_env[160], key_env[160];

/* A fresh self-signed P-256 certificate for cn into dir/cert.pem and dir/key.pem
 * (written beside and renamed, so the server never reads half a file). */
static void
make_cert(const char *cn)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
             "-subj /CN=%s -keyout %s/key.new -out %s/cert.new && mv %s/key.new %s/key.pem && "
             "mv %s/cert.new %s/cert.pem",
             cn, dir, dir, dir, dir, dir, dir);
    th_run(cmd);
}

static int
setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/shopd-tls-%d", (int)getpid());
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf %s && mkdir -p %s", dir, dir);
    th_run(cmd);
    make_cert("first.test");
    snprintf(cert_env, sizeof(cert_env), "SHOPD_TLS_CERT=%s/cert.pem", dir);
    snprintf(key_env, sizeof(key_env), "SHOPD_TLS_KEY=%s/key.pem", dir);
    const char *env[] = {cert_env, key_env, NULL};
    srv = th_start(env); /* waits for /healthz over HTTPS */
    return 0;
}

static int
teardown(void **state)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Exit status of a shell command, its output discarded. */
static int
sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    strncat(cmd, " >/dev/null 2>&1", sizeof(cmd) - strlen(cmd) - 1);
    return system(cmd);
}

/* The subject of the certificate a new connection is shown, into out. */
static void
served_subject(char *out, size_t n)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "openssl s_client -connect 127.0.0.1:%d </dev/null 2>/dev/null | "
             "openssl x509 -noout -subject 2>/dev/null",
             srv->port);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    out[0] = '\0';
    if (fgets(out, (int)n, p) == NULL)
        out[0] = '\0';
    pclose(p);
}

static void
test_https_answers(void **state)
{
    assert_int_equal(strncmp(srv->url, "https://", 8), 0);
    th_resp_t r = th_req(srv, "GET", "/healthz", NULL, NULL);
    assert_int_equal(r.status, 200);
    const char *hsts = th_header(&r, "Strict-Transport-Security");
    assert_non_null(hsts);
    assert_non_null(strstr(hsts, "max-age="));
    assert_string_equal(th_header(&r, "X-Content-Type-Options"), "nosniff");
    th_resp_free(&r);
    /* A whole store round trip over TLS. */
    long s = th_create_store(srv, th_slug("tls"), NULL);
    r = th_store_req(srv, s, NULL, "GET", "/api/v1/store", NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(th_header(&r, "Strict-Transport-Security"));
    th_resp_free(&r);
}

static void
test_protocols(void **state)
{
    int p = srv->port;
    /* 1.2 and 1.3 work; ALPN picks http/1.1. */
    assert_int_equal(sh("openssl s_client -connect 127.0.0.1:%d -tls1_2 </dev/null", p), 0);
    assert_int_equal(sh("openssl s_client -connect 127.0.0.1:%d -tls1_3 </dev/null", p), 0);
    assert_int_equal(sh("openssl s_client -connect 127.0.0.1:%d -alpn http/1.1 </dev/null | "
                        "grep -q 'ALPN protocol: http/1.1'",
                        p),
                     0);
    /* h2 alone is refused: this server speaks HTTP/1.1 only. */
    assert_int_not_equal(sh("openssl s_client -connect 127.0.0.1:%d -alpn h2 </dev/null", p), 0);
    /* TLS 1.0 and 1.1 are refused by the server (the client's security level is
     * lowered so that it is the server that says no). */
    assert_int_not_equal(
        sh("openssl s_client -connect 127.0.0.1:%d -tls1_1 -cipher DEFAULT@SECLEVEL=0 </dev/null",
           p),
        0);
    assert_int_not_equal(
        sh("openssl s_client -connect 127.0.0.1:%d -tls1 -cipher DEFAULT@SECLEVEL=0 </dev/null", p),
        0);
    /* Plain HTTP on the TLS port gets no HTTP answer. */
    char out[512];
    const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    th_raw(srv, req, sizeof(req) - 1, out, sizeof(out), 1000);
    assert_null(strstr(out, "HTTP/1.1 200"));
    /* The server still serves afterwards. */
    th_resp_t r = th_req(srv, "GET", "/healthz", NULL, NULL);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
}

static size_t
discard(char *p, size_t size, size_t n, void *ud)
{
    return size * n;
}

/* One GET /healthz on c (keep-alive); returns the status, *connects the new
 * connections curl had to open for it. */
static long
get_on(CURL *c, long *connects)
{
    char url[128];
    snprintf(url, sizeof(url), "%s/healthz", srv->url);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, connects);
    return status;
}

/* Waits up to 5 s for line in the server's log. */
static bool
log_has(const char *line)
{
    char cmd[512];
    for (int i = 0; i < 50; i++) {
        snprintf(cmd, sizeof(cmd), "grep -q '%s' %s", line, srv->log_path);
        if (system(cmd) == 0)
            return true;
        usleep(100000);
    }
    return false;
}

static void
test_sighup_reload(void **state)
{
    char subj[256];
    served_subject(subj, sizeof(subj));
    assert_non_null(strstr(subj, "first.test"));

    CURL *c = curl_easy_init();
    long connects;
    assert_int_equal(get_on(c, &connects), 200);
    assert_int_equal(connects, 1);

    make_cert("second.test");
    assert_int_equal(kill(srv->pid, SIGHUP), 0);
    assert_true(log_has("tls reload done"));
    /* The open connection was not dropped: the next request reuses it. */
    assert_int_equal(get_on(c, &connects), 200);
    assert_int_equal(connects, 0);
    curl_easy_cleanup(c);
    /* New connections get the new certificate. */
    served_subject(subj, sizeof(subj));
    assert_non_null(strstr(subj, "second.test"));

    /* A broken key: the reload fails, the second certificate stays in service. */
    assert_int_equal(sh("echo broken > %s/key.pem", dir), 0);
    assert_int_equal(kill(srv->pid, SIGHUP), 0);
    assert_true(log_has("tls reload failed"));
    served_subject(subj, sizeof(subj));
    assert_non_null(strstr(subj, "second.test"));
    th_resp_t r = th_req(srv, "GET", "/healthz", NULL, NULL);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
}

static void
test_config_errors(void **state)
{
    const char *argv[] = {"serve", NULL};
    char err[512];
    const char *only_cert[] = {cert_env, NULL};
    assert_int_equal(th_run_shopd(argv, only_cert, err, sizeof(err)), 2);
    assert_non_null(strstr(err, "SHOPD_TLS_CERT and SHOPD_TLS_KEY go together"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_https_answers),
        cmocka_unit_test(test_protocols),
        cmocka_unit_test(test_sighup_reload),
        cmocka_unit_test(test_config_errors),
        TH_STOP_TEST,
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
