/* Producer/consumer over a mutex-protected queue: blocks allocated by one thread are freed by
 * the other, and freed blocks are recycled by the producer. No race, no leak, no error. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define N 4000
static void *queue[64];
static int head, tail, done;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static void *consumer(void *arg) {
    (void)arg;
    long sum = 0;
    for (;;) {
        pthread_mutex_lock(&mu);
        while (head == tail && !done) pthread_cond_wait(&cv, &mu);
        if (head == tail && done) { pthread_mutex_unlock(&mu); break; }
        char *p = queue[head++ % 64];
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
        sum += p[0];
        free(p);
    }
    return (void *)sum;
}

int main(void) {
    pthread_t t;
    pthread_create(&t, NULL, consumer, NULL);
    for (int i = 0; i < N; i++) {
        char *p = malloc(16 + (i % 200));
        memset(p, i, 16 + (i % 200));
        pthread_mutex_lock(&mu);
        while (tail - head == 64) pthread_cond_wait(&cv, &mu);
        queue[tail++ % 64] = p;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
    }
    pthread_mutex_lock(&mu);
    done = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    pthread_join(t, NULL);
    return 0;
}
