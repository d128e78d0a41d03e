/*
 * retry.h — the AWS SDKs' "standard" retry mode, the one retry policy of
 * nines' DynamoDB clients (proto/ddb.h; the canaries' steps).
 *
 * Why: a canary measures what customers see, and customers talk to DynamoDB
 * through an SDK that retries. A leader failover of a second or two must show
 * as retries and latency, not as errors; a dead endpoint must still show as
 * errors once the attempts (or the retry quota) run out.
 *
 * The rules (AWS SDKs and Tools reference guide, "Retry behavior"; botocore's
 * standard.py):
 *   - at most max_attempts attempts (default 3), the first included;
 *   - retryable: transport failures with no HTTP answer (connect refused,
 *     reset, read timeout), HTTP 500/502/503/504, the throttling error codes
 *     (Throttling, ThrottlingException, ThrottledException,
 *     RequestThrottledException, TooManyRequestsException,
 *     ProvisionedThroughputExceededException, TransactionInProgressException,
 *     RequestLimitExceeded, BandwidthLimitExceeded, LimitExceededException,
 *     RequestThrottled, SlowDown, EC2ThrottledException) and the transient
 *     ones (RequestTimeout, RequestTimeoutException, PriorRequestNotComplete);
 *     anything else (4xx validation, conditional check, auth) is final;
 *   - the delay before retry i (i = 1, 2, ...) is b * 2^(i-1) * base, b drawn
 *     uniformly from [0, 1) ("full jitter"), capped at max_backoff (20 s);
 *   - a retry quota per client: starts at 500 tokens; a retry takes 5 (10
 *     after a timeout) and is refused when the quota cannot pay; a success
 *     gives back what its retries took, or 1 token when it needed none, up to
 *     the initial capacity. An exhausted quota makes a failing endpoint fail
 *     fast instead of tripling the load on it.
 *
 * Everything here is pure (randomness is passed in), so the tests drive it.
 * Thread-safety: a struct retry_quota is not locked; one per client/thread.
 */
#ifndef NINES_NET_RETRY_H
#define NINES_NET_RETRY_H

#include <stdint.h>

enum retry_class {
    RETRY_NO = 0,        /* final: success or a non-retryable error */
    RETRY_TRANSIENT = 1, /* 5xx, connection errors, transient codes */
    RETRY_THROTTLE = 2,  /* throttling codes */
    RETRY_TIMEOUT = 3    /* no answer before the attempt's timeout */
};

#define RETRY_QUOTA_INITIAL 500
#define RETRY_COST 5
#define RETRY_TIMEOUT_COST 10
#define RETRY_NO_RETRY_INCREMENT 1

/* transport_rc: 0 when an HTTP answer came back, else the ddb_call error
 * (NERR_TIMEOUT, NERR_IO, NERR_CORRUPT). http_status and error_type (the
 * answer's __type, may be NULL) describe the answer when transport_rc is 0. */
enum retry_class retry_classify(int transport_rc, int http_status, const char *error_type);

struct retry_quota {
    int tokens, capacity;
};

void retry_quota_init(struct retry_quota *q, int capacity);
/* Takes the cost of one retry after an error of class c. Returns the cost
 * taken (> 0), or 0 when the quota cannot pay: the caller must not retry. */
int retry_quota_acquire(struct retry_quota *q, enum retry_class c);
/* After a successful call: cost_taken is the sum of what its retries took. */
void retry_quota_success(struct retry_quota *q, int cost_taken);

/* The delay before retry number `retry` (1-based), u01 in [0, 1). */
uint64_t retry_backoff_ns(int retry, uint64_t base_ns, uint64_t max_backoff_ns, double u01);

#endif
