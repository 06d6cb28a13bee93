/*
 * events.c: the HCS event callback and compute-system samples in plain C11 (Microsoft's
 * EventCallbackSample.md and ComputeSystemSample.md, HCS-API 8.3; section 4; rules 23, 26,
 * 30, 34, 52, 53).
 *
 * Creates the empty VM (waiting on the operation), registers an event callback with
 * HcsEventOptionNone that records every event, then start, pause (c_pauseOption), resume,
 * get properties (State "Running"), enumerate (a JSON array holding our id) and terminate,
 * each waited for on an operation. Then checks:
 *   - exactly one HcsEventSystemExited arrived, with EventData (a SystemExitStatus) whose
 *     ExitType is "ForcedExit" (rule 26);
 *   - no HcsEventOperationCallback arrived (the option was not set, rule 34), nor any
 *     other event type;
 *   - HcsWaitForComputeSystemExit(system, 0, &doc) returns S_OK at once with the same
 *     status (rules 30, 53).
 * Exits 0 only if every documented result held.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep under -std=c11 */

#include <computecore.h>

#include "common.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The empty VM of the HCS samples (OperationCompletionSample.md). */
static const WCHAR c_EmptyVM[] = u"{"
    u"\"SchemaVersion\": {\"Major\": 2, \"Minor\": 1},"
    u"\"Owner\": \"Sample\","
    u"\"VirtualMachine\": {"
    u"  \"Chipset\": {\"Uefi\": {}},"
    u"  \"ComputeTopology\": {\"Memory\": {\"Backing\": \"Physical\", \"SizeInMB\": 1024}, \"Processor\": {\"Count\": 2}}"
    u"},"
    u"\"ShouldTerminateOnLastHandleClosed\": true"
    u"}";

/* ComputeSystemSample.md's pause options (HCS-API 8.3). */
static const WCHAR c_pauseOption[] = u"{\"SuspensionLevel\": \"Suspend\", \"HostedNotification\": {\"Reason\": \"Save\"}}";

/* What the event callback saw. EventData is valid only during the callback (rule 37): copy it. */
#define MAX_EVENTS 64
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    size_t count;
    HCS_EVENT_TYPE types[MAX_EVENTS];
    char* data[MAX_EVENTS]; /* UTF-8 copy of EventData, NULL if it was NULL */
    int withOperation;      /* events whose Operation was non-NULL */
} event_log;

static event_log g_log = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, {0}, {0}, 0};

static void CALLBACK on_event(HCS_EVENT* event, void* context)
{
    event_log* log = (event_log*)context;
    char* data = event->EventData != NULL ? hcs_utf8(event->EventData) : NULL;
    printf("  event: Type 0x%08X, EventData %s\n", (unsigned)event->Type, data != NULL ? data : "NULL");
    pthread_mutex_lock(&log->lock);
    if (log->count < MAX_EVENTS) {
        log->types[log->count] = event->Type;
        log->data[log->count] = data;
        log->count++;
    } else {
        free(data);
    }
    if (event->Operation != NULL) {
        log->withOperation++;
    }
    pthread_cond_broadcast(&log->changed);
    pthread_mutex_unlock(&log->lock);
}

static int g_failures = 0;

/* Prints one step and counts it as failed unless ok. */
static void check(int ok, const char* what)
{
    printf("  %s: %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) {
        g_failures++;
    }
}

/* Waits on op without limit; prints and checks the HRESULT; returns the document (LocalFree). */
static PWSTR wait_expect(HCS_OPERATION op, HRESULT expected, const char* what)
{
    PWSTR doc = NULL;
    HRESULT hr = HcsWaitForOperationResult(op, INFINITE, &doc);
    char line[256];
    snprintf(line, sizeof line, "%s -> 0x%08X (%s)", what, (unsigned)hr, hcs_hresult_name(hr));
    check(hr == expected, line);
    if (hr != expected && doc != NULL) {
        char* text = hcs_utf8(doc);
        printf("        document: %s\n", text);
        free(text);
    }
    return doc;
}

static void accepted(HRESULT hr, const char* what)
{
    char line[256];
    snprintf(line, sizeof line, "%s accepted -> 0x%08X (%s)", what, (unsigned)hr, hcs_hresult_name(hr));
    check(hr == S_OK, line);
}

/* Waits until the log holds an event of this type, or timeoutMs passes. */
static int wait_for_event(event_log* log, HCS_EVENT_TYPE type, int timeoutMs)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeoutMs / 1000;
    deadline.tv_nsec += (long)(timeoutMs % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&log->lock);
    int found = 0;
    for (;;) {
        for (size_t i = 0; i < log->count; i++) {
            found |= log->types[i] == type;
        }
        if (found || pthread_cond_timedwait(&log->changed, &log->lock, &deadline) == ETIMEDOUT) {
            break;
        }
    }
    pthread_mutex_unlock(&log->lock);
    return found;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    WCHAR id[64];
    hcs_sample_id(id, 64, "events");
    char* idText = hcs_utf8(id);
    printf("events: event callback (HcsEventOptionNone) on \"%s\" through start, pause, resume, "
           "properties, enumerate, terminate\n", idText);

    HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
    check(op != NULL, "HcsCreateOperation -> non-NULL");
    HCS_SYSTEM system = NULL;
    accepted(HcsCreateComputeSystem(id, c_EmptyVM, op, NULL, &system), "HcsCreateComputeSystem");
    LocalFree(wait_expect(op, S_OK, "create"));

    HRESULT hr = HcsSetComputeSystemCallback(system, HcsEventOptionNone, &g_log, on_event);
    check(hr == S_OK, "HcsSetComputeSystemCallback(HcsEventOptionNone) -> S_OK");

    accepted(HcsStartComputeSystem(system, op, NULL), "HcsStartComputeSystem");
    LocalFree(wait_expect(op, S_OK, "start"));

    /* Pause and resume, each with its own operation, as ComputeSystemSample.md does. */
    HCS_OPERATION pauseOp = HcsCreateOperation(NULL, NULL);
    accepted(HcsPauseComputeSystem(system, pauseOp, c_pauseOption), "HcsPauseComputeSystem(c_pauseOption)");
    LocalFree(wait_expect(pauseOp, S_OK, "pause"));
    HcsCloseOperation(pauseOp);

    HCS_OPERATION resumeOp = HcsCreateOperation(NULL, NULL);
    accepted(HcsResumeComputeSystem(system, resumeOp, NULL), "HcsResumeComputeSystem");
    LocalFree(wait_expect(resumeOp, S_OK, "resume"));
    HcsCloseOperation(resumeOp);

    accepted(HcsGetComputeSystemProperties(system, op, NULL), "HcsGetComputeSystemProperties(NULL)");
    PWSTR doc = wait_expect(op, S_OK, "get properties");
    char* text = hcs_utf8(doc);
    printf("        properties: %s\n", text);
    free(text);
    check(hcs_doc_field_is(doc, "State", "\"Running\""), "State is \"Running\" after resume");
    LocalFree(doc);

    HCS_OPERATION enumOp = HcsCreateOperation(NULL, NULL);
    accepted(HcsEnumerateComputeSystems(NULL, enumOp), "HcsEnumerateComputeSystems(NULL)");
    doc = wait_expect(enumOp, S_OK, "enumerate");
    text = hcs_utf8(doc);
    printf("        systems: %s\n", text);
    const char* first = text;
    while (*first == ' ' || *first == '\t' || *first == '\r' || *first == '\n') {
        first++;
    }
    char quotedId[80];
    snprintf(quotedId, sizeof quotedId, "\"%s\"", idText);
    check(doc != NULL && *first == '[', "the enumeration is a JSON array (rule 23)");
    check(strstr(text, quotedId) != NULL, "it contains our system's id");
    free(text);
    LocalFree(doc);
    HcsCloseOperation(enumOp);

    accepted(HcsTerminateComputeSystem(system, op, NULL), "HcsTerminateComputeSystem");
    LocalFree(wait_expect(op, S_OK, "terminate"));
    HcsCloseOperation(op);

    /* Rule 53: the exit event is queued before terminate completes; give delivery time, then
     * a little more so that a duplicate would show. */
    check(wait_for_event(&g_log, HcsEventSystemExited, 10000), "HcsEventSystemExited arrived");
    struct timespec grace = {0, 200 * 1000000L};
    nanosleep(&grace, NULL);

    doc = NULL;
    hr = HcsWaitForComputeSystemExit(system, 0, &doc);
    text = hcs_utf8(doc);
    printf("        exit status: %s\n", text);
    free(text);
    check(hr == S_OK, "HcsWaitForComputeSystemExit(system, 0, &doc) -> S_OK");
    check(hcs_doc_field_is(doc, "ExitType", "\"ForcedExit\""), "its SystemExitStatus has ExitType \"ForcedExit\"");
    LocalFree(doc);

    /* After HcsCloseComputeSystem returns, no callback of this handle runs (rule 29). */
    HcsCloseComputeSystem(system);

    pthread_mutex_lock(&g_log.lock);
    int exited = 0, operationCallbacks = 0, others = 0, exitDataOk = 0;
    for (size_t i = 0; i < g_log.count; i++) {
        if (g_log.types[i] == HcsEventSystemExited) {
            exited++;
            exitDataOk = g_log.data[i] != NULL && strstr(g_log.data[i], "ForcedExit") != NULL;
        } else if (g_log.types[i] == HcsEventOperationCallback) {
            operationCallbacks++;
        } else {
            others++;
        }
    }
    int withOperation = g_log.withOperation;
    for (size_t i = 0; i < g_log.count; i++) {
        free(g_log.data[i]);
    }
    pthread_mutex_unlock(&g_log.lock);

    check(exited == 1, "exactly one HcsEventSystemExited");
    check(exitDataOk, "its EventData is non-NULL and contains \"ForcedExit\"");
    check(operationCallbacks == 0, "no HcsEventOperationCallback (option not set)");
    check(others == 0, "no other event type");
    check(withOperation == 0, "no event carried an Operation");

    free(idText);
    printf("events: %s\n", g_failures == 0 ? "PASS" : "FAIL");
    return g_failures == 0 ? 0 : 1;
}
