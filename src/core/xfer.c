/*
 * xfer.c: per-thread libcurl handles (include/shopd/xfer.h). One pthread key
 * holds a thread's array of handles, one per use; the key's destructor cleans
 * them up when the thread ends.
 */
#include <pthread.h>
#include <stdlib.h>

#include "shopd/common.h"
#include "shopd/xfer.h"

static pthread_key_t key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void
key_free(void *p)
{
    CURL **hs = p;
    for (int i = 0; i < XFER_USES; i++)
        if (hs[i])
            curl_easy_cleanup(hs[i]);
    free(hs);
}

static void
key_make(void)
{
    if (pthread_key_create(&key, key_free) != 0)
        abort();
}

CURL *
xfer_handle(xfer_use_t use)
{
    pthread_once(&key_once, key_make);
    CURL **hs = pthread_getspecific(key);
    if (hs == NULL) {
        hs = calloc(XFER_USES, sizeof(*hs));
        if (hs == NULL || pthread_setspecific(key, hs) != 0) {
            free(hs);
            return NULL;
        }
    }
    if (hs[use] == NULL)
        hs[use] = curl_easy_init();
    else
        curl_easy_reset(hs[use]); /* keeps the connection cache */
    return hs[use];
}
