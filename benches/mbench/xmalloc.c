/* xmalloc: the producer/consumer shape of Lever and Boreham's malloc test as mimalloc-bench runs
 * it (`xmalloc-test -w <cpus> -t 5 -s 64`): W producer threads allocate batches of 4096
 * objects of SIZE bytes (writing the first 128 bytes of each) and push them on a shared stack
 * of at most 100 batches (mutex and condition variables); W consumer threads pop batches and
 * free every object. Every free is cross-thread. SIZE 0 draws each size from the original's
 * list (8 .. 2048 bytes).
 *
 * The original runs for a fixed time; this one moves BATCHES batches per producer.
 *
 * Usage: xmalloc [workers=2] [size=64] [batches=200] */
#include "mbench.h"

#include <pthread.h>

#define PER_BATCH 4096
#define QUEUE_LIMIT 100

struct batch {
    struct batch *next;
    void *objects[PER_BATCH];
};

static const size_t sizes[] = {8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048};
static struct batch *stack;
static long queued, consumed;
static long total_batches, per_producer;
static size_t object_size;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t not_empty = PTHREAD_COND_INITIALIZER, not_full = PTHREAD_COND_INITIALIZER;

static void *producer(void *arg) {
    uint64_t r = (uint64_t)(intptr_t)arg + 1;
    for (long b = 0; b < per_producer; b++) {
        struct batch *bt = mb_malloc(sizeof *bt);
        for (int i = 0; i < PER_BATCH; i++) {
            size_t n = object_size ? object_size : sizes[mb_rand(&r) % (sizeof sizes / sizeof *sizes)];
            bt->objects[i] = mb_malloc(n);
            memset(bt->objects[i], i & 0xff, n > 128 ? 128 : n);
        }
        pthread_mutex_lock(&lock);
        while (queued >= QUEUE_LIMIT) pthread_cond_wait(&not_full, &lock);
        bt->next = stack;
        stack = bt;
        queued++;
        pthread_cond_signal(&not_empty);
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

static void *consumer(void *arg) {
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&lock);
        while (stack == NULL && consumed < total_batches) pthread_cond_wait(&not_empty, &lock);
        if (stack == NULL) { /* everything consumed */
            pthread_cond_broadcast(&not_empty);
            pthread_mutex_unlock(&lock);
            return NULL;
        }
        struct batch *bt = stack;
        stack = bt->next;
        queued--;
        if (++consumed == total_batches) pthread_cond_broadcast(&not_empty);
        pthread_cond_signal(&not_full);
        pthread_mutex_unlock(&lock);
        for (int i = 0; i < PER_BATCH; i++) {
            mb_check(((unsigned char *)bt->objects[i])[0] == (unsigned char)(i & 0xff), "xmalloc: object corrupted");
            free(bt->objects[i]);
        }
        free(bt);
    }
}

int main(int argc, char **argv) {
    long workers = mb_arg(argc, argv, 1, 2);
    object_size = (size_t)mb_arg(argc, argv, 2, 64);
    per_producer = mb_arg(argc, argv, 3, 200);
    if (workers < 1 || per_producer < 1) {
        fprintf(stderr, "xmalloc: need workers >= 1 and batches >= 1\n");
        return 2;
    }
    total_batches = workers * per_producer;
    pthread_t *ts = mb_malloc(2 * (size_t)workers * sizeof *ts);
    double t0 = mb_now();
    for (long i = 0; i < workers; i++) {
        mb_check(pthread_create(&ts[2 * i], NULL, consumer, NULL) == 0, "pthread_create");
        mb_check(pthread_create(&ts[2 * i + 1], NULL, producer, (void *)(intptr_t)i) == 0, "pthread_create");
    }
    for (long i = 0; i < 2 * workers; i++) pthread_join(ts[i], NULL);
    double secs = mb_now() - t0;
    mb_check(consumed == total_batches && stack == NULL, "xmalloc: batches lost");
    free(ts);
    mb_report("xmalloc", secs, 2.0 * (double)total_batches * (PER_BATCH + 1));
    return 0;
}
