#include "net/retry.h"

#include <string.h>

#include "lib/err.h"

static const char *const throttle_codes[] = {
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException",
    "TransactionInProgressException", "RequestLimitExceeded", "BandwidthLimitExceeded",
    "LimitExceededException", "RequestThrottled", "SlowDown", "EC2ThrottledException", NULL};

static const char *const transient_codes[] = {"RequestTimeout", "RequestTimeoutException",
                                              "PriorRequestNotComplete", NULL};

static int in_list(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(s, *list))
            return 1;
    return 0;
}

enum retry_class retry_classify(int transport_rc, int http_status, const char *error_type)
{
    if (transport_rc == NERR_TIMEOUT)
        return RETRY_TIMEOUT;
    if (transport_rc)
        return RETRY_TRANSIENT; /* no HTTP answer: connection refused, reset, garbage */
    if (http_status < 400)
        return RETRY_NO;
    if (error_type && in_list(error_type, throttle_codes))
        return RETRY_THROTTLE;
    if (error_type && in_list(error_type, transient_codes))
        return RETRY_TRANSIENT;
    if (http_status == 500 || http_status == 502 || http_status == 503 || http_status == 504)
        return RETRY_TRANSIENT;
    return RETRY_NO;
}

void retry_quota_init(struct retry_quota *q, int capacity)
{
    q->tokens = q->capacity = capacity > 0 ? capacity : RETRY_QUOTA_INITIAL;
}

int retry_quota_acquire(struct retry_quota *q, enum retry_class c)
{
    int cost = c == RETRY_TIMEOUT ? RETRY_TIMEOUT_COST : RETRY_COST;
    if (c == RETRY_NO || q->tokens < cost)
        return 0;
    q->tokens -= cost;
    return cost;
}

void retry_quota_success(struct retry_quota *q, int cost_taken)
{
    q->tokens += cost_taken > 0 ? cost_taken : RETRY_NO_RETRY_INCREMENT;
    if (q->tokens > q->capacity)
        q->tokens = q->capacity;
}

uint64_t retry_backoff_ns(int retry, uint64_t base_ns, uint64_t max_backoff_ns, double u01)
{
    if (retry < 1)
        retry = 1;
    double d = (double)base_ns;
    for (int i = 1; i < retry && d < (double)max_backoff_ns; i++)
        d *= 2;
    if (d > (double)max_backoff_ns)
        d = (double)max_backoff_ns;
    if (u01 < 0)
        u01 = 0;
    if (u01 >= 1)
        u01 = 0.999999999;
    return (uint64_t)(d * u01);
}
