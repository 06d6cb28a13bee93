/*
 * tests/stress.c: many threads driving many operations through libcomputecore.so at once,
 * built with AddressSanitizer and LeakSanitizer (HCS-API O-7, O-8, O-10 to O-12; rules 3, 4,
 * 5, 7, 8, 10, 11, 12, 26).
 *
 * THREADS threads each run OPS_PER_THREAD operations, cycling through five styles:
 *   0 callback closes its own operation   enumerate; the callback checks type, context and
 *                                         result (never PENDING), then HcsCloseOperation(op)
 *   1 callback, re-used, closed by caller  two enumerates in turn on one operation, each
 *                                         waited for with 1 ms timeouts; the callback must run
 *                                         once per tracked call (twice), then the caller closes
 *   2 closed right after it was accepted   the callback may run at most once, and never after
 *                                         HcsCloseOperation has returned (rule 12)
 *   3 no callback, polled                 HcsGetOperationResult until not PENDING, then
 *                                         re-used at once (S_OK, or ALREADY_STARTED if it is
 *                                         still pending: rule 8), then waited for and closed
 *   4 callback set later, closes itself   HcsSetOperationCallback, then get properties of a
 *                                         shared VM; the callback checks the document
 * while VM_THREADS threads run VM_CYCLES create/callback/start/get properties/terminate cycles
 * (one SystemExited each; in cycle 0 EXIT_WAITERS threads wait for the exit concurrently, in
 * cycle 1 the event callback closes the system handle from inside itself). At the end every accepted call's callback must have run exactly
 * once per tracked call, no callback ran after its operation's close returned, and every
 * handle is closed; ASan/LSan then report any memory error or leak.
 */
#define _POSIX_C_SOURCE 200809L

#include <computecore.h>

#include "common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define THREADS 16
#define OPS_PER_THREAD 500
#define STYLES 5
#define VM_THREADS 2
#define VM_CYCLES 3
#define EXIT_WAITERS 4

static const WCHAR c_SmallVM[] = u"{\"SchemaVersion\":{\"Major\":2,\"Minor\":1},\"Owner\":\"stress\","
                                 u"\"VirtualMachine\":{\"Chipset\":{\"Uefi\":{}},\"ComputeTopology\":"
                                 u"{\"Memory\":{\"SizeInMB\":256},\"Processor\":{\"Count\":1}}},"
                                 u"\"ShouldTerminateOnLastHandleClosed\":true}";

typedef struct {
    int style;
    HCS_OPERATION op;
    atomic_int calls;        /* callback invocations */
    atomic_int inside;       /* callbacks running right now */
    atomic_int closed;       /* set once HcsCloseOperation(op) has returned (style 2) */
    atomic_int afterClose;   /* callbacks that started after that */
    atomic_int badResult;    /* a callback saw PENDING, a failure, a wrong type or context */
} record;

static record* g_records;
static HCS_SYSTEM g_sharedVm;

static atomic_int g_accepted;        /* accepted calls whose callback must run */
static atomic_int g_completions;     /* callbacks run */
static atomic_int g_refused;         /* calls refused synchronously (unexpected) */
static atomic_int g_alreadyStarted;  /* style 3: re-use while pending, refused (rule 8) */
static atomic_int g_timeouts;        /* HCS_E_OPERATION_TIMEOUT from short waits */
static atomic_int g_pending;         /* HCS_E_OPERATION_PENDING from polls */
static atomic_int g_failures;        /* any other broken expectation */

/* Set while this thread is inside a library call that starts work: a callback that sees it
 * set ran on the caller's stack inside the starting call, which O-11 forbids. */
static _Thread_local int t_inCall;
static _Thread_local HRESULT t_lastHr;
static atomic_int g_onCallerStack;
#define STARTING(call) (t_inCall = 1, t_lastHr = (call), t_inCall = 0, t_lastHr)

static void fail(const char* what, HRESULT hr)
{
    atomic_fetch_add(&g_failures, 1);
    fprintf(stderr, "FAIL %s: 0x%08X (%s)\n", what, (unsigned)hr, hcs_hresult_name(hr));
}

static void sleep_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Spins until *value >= target or the deadline; returns whether it got there. */
static int wait_at_least(atomic_int* value, int target, double seconds)
{
    double deadline = now_s() + seconds;
    while (atomic_load(value) < target) {
        if (now_s() > deadline) {
            return 0;
        }
        sleep_ms(1);
    }
    return 1;
}

static void on_complete(HCS_OPERATION op, void* context)
{
    record* r = (record*)context;
    if (t_inCall) {
        atomic_fetch_add(&g_onCallerStack, 1);
    }
    if (atomic_load(&r->closed)) {
        atomic_fetch_add(&r->afterClose, 1);
    }
    atomic_fetch_add(&r->inside, 1);
    if (r->style != 2) {
        /* Inside the callback the result is final (rule 10) and the handle is valid. */
        if (op != r->op || HcsGetOperationContext(op) != r) {
            atomic_fetch_add(&r->badResult, 1);
        }
        PWSTR doc = NULL;
        HRESULT hr = HcsGetOperationResult(op, &doc);
        HCS_OPERATION_TYPE expected = r->style == 4 ? HcsOperationTypeGetProperties : HcsOperationTypeEnumerate;
        if (hr != S_OK || doc == NULL || HcsGetOperationType(op) != expected) {
            atomic_fetch_add(&r->badResult, 1);
            fail("result inside the callback", hr);
        }
        if (r->style == 4 && !hcs_doc_contains(doc, "\"State\"")) {
            atomic_fetch_add(&r->badResult, 1);
        }
        LocalFree(doc);
    }
    atomic_fetch_sub(&r->inside, 1);
    atomic_fetch_add(&r->calls, 1);
    atomic_fetch_add(&g_completions, 1);
    if (r->style == 0 || r->style == 4) {
        HcsCloseOperation(op); /* its own operation: allowed (rule 11) */
    }
}

static void accept(HRESULT hr, const char* what)
{
    if (hr == S_OK) {
        atomic_fetch_add(&g_accepted, 1);
    } else {
        atomic_fetch_add(&g_refused, 1);
        fail(what, hr);
    }
}

/* Waits with 1 ms timeouts until the operation is done; returns its HRESULT. */
static HRESULT wait_short(HCS_OPERATION op)
{
    for (;;) {
        HRESULT hr = HcsWaitForOperationResult(op, 1, NULL);
        if (hr != HCS_E_OPERATION_TIMEOUT) {
            return hr;
        }
        atomic_fetch_add(&g_timeouts, 1);
    }
}

static void run_one(record* r)
{
    HRESULT hr;
    switch (r->style) {
    case 0:
        r->op = HcsCreateOperation(r, on_complete);
        accept(STARTING(HcsEnumerateComputeSystems(NULL, r->op)), "style 0 enumerate");
        break; /* the callback closes it */
    case 1:
        r->op = HcsCreateOperation(r, on_complete);
        for (int call = 1; call <= 2; call++) {
            /* O-7: a completed operation is re-used at once, even while its previous
             * completion callback is still queued or running (the re-use waits for it). */
            hr = STARTING(HcsEnumerateComputeSystems(NULL, r->op));
            accept(hr, "style 1 enumerate");
            if ((hr = wait_short(r->op)) != S_OK) {
                fail("style 1 wait", hr);
            }
            /* The result can be final before the callback has run: wait for it before re-use. */
            if (!wait_at_least(&r->calls, call, 30)) {
                fail("style 1 callback did not run", S_OK);
            }
        }
        HcsCloseOperation(r->op);
        break;
    case 2:
        r->op = HcsCreateOperation(r, on_complete);
        hr = STARTING(HcsEnumerateComputeSystems(NULL, r->op));
        if (hr != S_OK) {
            fail("style 2 enumerate", hr);
        }
        HcsCloseOperation(r->op);
        atomic_store(&r->closed, 1);
        if (atomic_load(&r->inside) != 0) {
            atomic_fetch_add(&r->afterClose, 1); /* close returned while its callback ran */
        }
        break;
    case 3: {
        r->op = HcsCreateOperation(r, NULL);
        if ((hr = HcsEnumerateComputeSystems(NULL, r->op)) != S_OK) {
            fail("style 3 enumerate", hr);
        }
        /* Re-use at once: still pending -> ALREADY_STARTED (first call untouched); done -> S_OK. */
        hr = HcsEnumerateComputeSystems(NULL, r->op);
        if (hr == HCS_E_OPERATION_ALREADY_STARTED) {
            atomic_fetch_add(&g_alreadyStarted, 1);
        } else if (hr != S_OK) {
            fail("style 3 re-use", hr);
        }
        PWSTR doc = NULL;
        while ((hr = HcsGetOperationResult(r->op, &doc)) == HCS_E_OPERATION_PENDING) {
            atomic_fetch_add(&g_pending, 1);
            sleep_ms(0);
        }
        if (hr != S_OK || doc == NULL) {
            fail("style 3 poll", hr);
        }
        LocalFree(doc);
        HcsCloseOperation(r->op);
        break;
    }
    case 4:
        r->op = HcsCreateOperation(NULL, NULL);
        if ((hr = HcsSetOperationCallback(r->op, r, on_complete)) != S_OK) {
            fail("style 4 set callback", hr);
        }
        accept(STARTING(HcsGetComputeSystemProperties(g_sharedVm, r->op, NULL)), "style 4 get properties");
        break; /* the callback closes it */
    }
}

static void* operations_thread(void* arg)
{
    record* mine = (record*)arg;
    for (int i = 0; i < OPS_PER_THREAD; i++) {
        run_one(&mine[i]);
    }
    return NULL;
}

/* ---- VM cycles ---- */

/* What one VM cycle's event callback sees. In cycle 1 the callback closes the system handle
 * itself at the exit (allowed from inside its own callback, without deadlock: rule 56). */
typedef struct {
    atomic_int exits;
    HCS_SYSTEM system;
    int closeInCallback;
} vm_cycle;

static atomic_int g_exits;
static atomic_int g_exitWaiters; /* HcsWaitForComputeSystemExit(INFINITE) answered S_OK + ForcedExit */

static void on_vm_event(HCS_EVENT* event, void* context)
{
    vm_cycle* vm = (vm_cycle*)context;
    if (event->Type == HcsEventSystemExited) {
        if (event->EventData == NULL || !hcs_doc_contains(event->EventData, "ForcedExit")) {
            fail("SystemExited without a ForcedExit status", S_OK);
        }
        atomic_fetch_add(&g_exits, 1);
        if (vm->closeInCallback) {
            HcsCloseComputeSystem(vm->system);
        }
        atomic_fetch_add(&vm->exits, 1); /* last: the cycle's thread may return once it sees this */
    } else {
        fail("unexpected event type", (HRESULT)event->Type);
    }
}

/* Rule 30: any number of concurrent waiters get the same exit status. */
static void* exit_waiter(void* arg)
{
    PWSTR status = NULL;
    HRESULT hr = HcsWaitForComputeSystemExit((HCS_SYSTEM)arg, INFINITE, &status);
    if (hr == S_OK && hcs_doc_contains(status, "ForcedExit")) {
        atomic_fetch_add(&g_exitWaiters, 1);
    } else {
        fail("exit waiter", hr);
    }
    LocalFree(status);
    return NULL;
}

/* Waits for op, with 1 ms timeouts when short is set (so that timeouts happen); frees the document. */
static HRESULT wait_doc(HCS_OPERATION op, const char* what, int short_waits)
{
    PWSTR doc = NULL;
    HRESULT hr;
    while ((hr = HcsWaitForOperationResult(op, short_waits ? 1 : INFINITE, &doc)) == HCS_E_OPERATION_TIMEOUT) {
        atomic_fetch_add(&g_timeouts, 1);
        if (doc != NULL) {
            fail("a timed-out wait returned a document", hr);
        }
    }
    if (hr != S_OK) {
        char* text = hcs_utf8(doc);
        fprintf(stderr, "  %s: %s\n", what, text);
        free(text);
        fail(what, hr);
    }
    LocalFree(doc);
    return hr;
}

static void* vm_thread(void* arg)
{
    int index = (int)(intptr_t)arg;
    for (int cycle = 0; cycle < VM_CYCLES; cycle++) {
        char name[64];
        WCHAR id[64];
        snprintf(name, sizeof name, "stress-vm%d.%d", index, cycle);
        hcs_sample_id(id, 64, name);
        HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
        HCS_SYSTEM system = NULL;
        HRESULT hr = HcsCreateComputeSystem(id, c_SmallVM, op, NULL, &system);
        if (hr != S_OK) {
            fail("vm create", hr);
            HcsCloseOperation(op);
            continue;
        }
        wait_doc(op, "vm create", 1);
        vm_cycle vm = {.system = system, .closeInCallback = cycle == 1};
        atomic_init(&vm.exits, 0);
        if ((hr = HcsSetComputeSystemCallback(system, HcsEventOptionNone, &vm, on_vm_event)) != S_OK) {
            fail("vm set callback", hr);
        }
        if ((hr = HcsStartComputeSystem(system, op, NULL)) != S_OK) {
            fail("vm start", hr);
        }
        /* Re-use while the start is pending: ALREADY_STARTED, the start untouched (rule 8). */
        hr = HcsGetComputeSystemProperties(system, op, NULL);
        if (hr == HCS_E_OPERATION_ALREADY_STARTED) {
            atomic_fetch_add(&g_alreadyStarted, 1);
        } else if (hr == S_OK) {
            wait_doc(op, "vm get properties right after start", 0); /* the start was already done */
        } else {
            fail("vm get properties while starting", hr);
        }
        wait_doc(op, "vm start", 1);
        if (HcsGetOperationType(op) != HcsOperationTypeStart && HcsGetOperationType(op) != HcsOperationTypeGetProperties) {
            fail("vm: wrong operation type after start", S_OK);
        }
        for (int i = 0; i < 5; i++) {
            if ((hr = HcsGetComputeSystemProperties(system, op, u"{\"PropertyTypes\":[\"Memory\"]}")) != S_OK) {
                fail("vm get properties", hr);
            }
            wait_doc(op, "vm get properties", 0);
        }
        pthread_t waiters[EXIT_WAITERS];
        int waiting = cycle == 0 ? EXIT_WAITERS : 0; /* cycle 0: concurrent exit waiters */
        for (int w = 0; w < waiting; w++) {
            pthread_create(&waiters[w], NULL, exit_waiter, system);
        }
        if ((hr = HcsTerminateComputeSystem(system, op, NULL)) != S_OK) {
            fail("vm terminate", hr);
        }
        wait_doc(op, "vm terminate", 1);
        for (int w = 0; w < waiting; w++) {
            pthread_join(waiters[w], NULL);
        }
        HcsCloseOperation(op);
        /* The exit event is queued before terminate completes (rule 53), but closing the
         * handle drops what was not delivered yet (rule 29): wait for it first. */
        if (!wait_at_least(&vm.exits, 1, 10)) {
            fail("vm: no SystemExited event", S_OK);
        }
        if (!vm.closeInCallback) {
            PWSTR status = NULL;
            if ((hr = HcsWaitForComputeSystemExit(system, 0, &status)) != S_OK) {
                fail("vm exit status after the event", hr);
            }
            LocalFree(status);
            HcsCloseComputeSystem(system); /* no callback of this handle after this returns */
        }
        sleep_ms(50);
        if (atomic_load(&vm.exits) != 1) {
            fail("vm: more than one SystemExited event", S_OK);
        }
    }
    return NULL;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("stress: %d threads x %d operations (%d styles) + %d x %d VM cycles, under AddressSanitizer\n", THREADS,
           OPS_PER_THREAD, STYLES, VM_THREADS, VM_CYCLES);
    double start = now_s();

    /* The shared VM for the style 4 get properties: created, never started. */
    WCHAR id[64];
    hcs_sample_id(id, 64, "stress-shared");
    HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
    HRESULT hr = HcsCreateComputeSystem(id, c_SmallVM, op, NULL, &g_sharedVm);
    if (hr != S_OK || wait_doc(op, "shared VM create", 0) != S_OK) {
        fail("shared VM create", hr);
        return 1;
    }
    HcsCloseOperation(op);

    g_records = (record*)calloc((size_t)THREADS * OPS_PER_THREAD, sizeof(record));
    for (int i = 0; i < THREADS * OPS_PER_THREAD; i++) {
        g_records[i].style = (i + i / OPS_PER_THREAD) % STYLES; /* threads start on different styles */
    }

    pthread_t threads[THREADS];
    pthread_t vms[VM_THREADS];
    for (int t = 0; t < VM_THREADS; t++) {
        pthread_create(&vms[t], NULL, vm_thread, (void*)(intptr_t)t);
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_create(&threads[t], NULL, operations_thread, &g_records[t * OPS_PER_THREAD]);
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(threads[t], NULL);
    }
    for (int t = 0; t < VM_THREADS; t++) {
        pthread_join(vms[t], NULL);
    }

    /* Every accepted call with a callback (styles 0, 1, 4) is answered: wait for the stragglers. */
    int expected = 0;
    for (int i = 0; i < THREADS * OPS_PER_THREAD; i++) {
        int style = g_records[i].style;
        expected += style == 0 || style == 4 ? 1 : style == 1 ? 2 : 0;
    }
    int settled = 0;
    double deadline = now_s() + 60;
    for (;;) {
        int done = 0;
        for (int i = 0; i < THREADS * OPS_PER_THREAD; i++) {
            if (g_records[i].style != 2 && g_records[i].style != 3) {
                done += atomic_load(&g_records[i].calls);
            }
        }
        settled = done;
        if (done >= expected || now_s() > deadline) {
            break;
        }
        sleep_ms(10);
    }
    sleep_ms(300); /* a duplicate or late callback would show up here */

    int wrongCount = 0, afterClose = 0, bad = 0, style2Ran = 0;
    for (int i = 0; i < THREADS * OPS_PER_THREAD; i++) {
        record* r = &g_records[i];
        int calls = atomic_load(&r->calls);
        int want = r->style == 0 || r->style == 4 ? 1 : r->style == 1 ? 2 : 0;
        if (r->style == 2) {
            style2Ran += calls;
            wrongCount += calls > 1;
        } else {
            wrongCount += calls != want;
        }
        afterClose += atomic_load(&r->afterClose);
        bad += atomic_load(&r->badResult);
    }

    HcsCloseComputeSystem(g_sharedVm);
    free(g_records);

    printf("  accepted calls with a callback: %d, callbacks run: %d (style 2: %d of %d closed early ran)\n",
           atomic_load(&g_accepted), atomic_load(&g_completions), style2Ran, THREADS * OPS_PER_THREAD / STYLES);
    printf("  short-wait timeouts: %d, PENDING polls: %d, re-use while pending refused (ALREADY_STARTED): %d\n",
           atomic_load(&g_timeouts), atomic_load(&g_pending), atomic_load(&g_alreadyStarted));
    printf("  VM cycles: %d, SystemExited events: %d, exit waiters answered: %d\n", VM_THREADS * VM_CYCLES,
           atomic_load(&g_exits), atomic_load(&g_exitWaiters));
    printf("  elapsed: %.1f s\n", now_s() - start);

    int ok = 1;
#define EXPECT(cond, text)                                   \
    do {                                                     \
        printf("  %s  %s\n", (cond) ? "PASS" : "FAIL", text); \
        ok &= (cond) != 0;                                   \
    } while (0)
    EXPECT(atomic_load(&g_refused) == 0, "every call was accepted");
    EXPECT(settled == expected, "every accepted call's callback ran (once per tracked call)");
    EXPECT(wrongCount == 0, "no callback ran twice for one call, none missing");
    EXPECT(afterClose == 0, "no callback ran after HcsCloseOperation returned");
    EXPECT(atomic_load(&g_onCallerStack) == 0, "no callback ran on the caller's stack inside the starting call");
    EXPECT(bad == 0, "inside each callback: right operation, context, type, S_OK and a document");
    EXPECT(atomic_load(&g_exits) == VM_THREADS * VM_CYCLES, "one SystemExited per VM cycle");
    EXPECT(atomic_load(&g_exitWaiters) == VM_THREADS * EXIT_WAITERS, "every concurrent exit waiter got S_OK + ForcedExit");
    EXPECT(atomic_load(&g_failures) == 0, "no other failure");
    printf("stress: %s\n", ok ? "PASS" : "FAIL");
    return ok ? 0 : 1;
}
