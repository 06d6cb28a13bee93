// operation_callback.cpp: "Use an HCS operation callback", the second pattern of Microsoft's
// OperationCompletionSample.md (HCS-API 8.2 (b); O-10, O-11, O-12, rules 10 and 11), ported
// to Linux with wil.h. The operation is created with a completion callback and an event as
// its context and is not kept: the callback checks the type (HcsOperationTypeCreate), reads
// the result (S_OK), closes its own operation (legal inside its callback) and signals the
// event the main thread waits on. Added checks: the callback runs exactly once, and on a
// library thread, not on the caller's.
// Exits 0 only if every documented result held.

#include <computecore.h>

#include "wil.h"

#include <atomic>
#include <cstdio>
#include <pthread.h>
#include <unistd.h>

// JSON document that represents an "Empty" virtual machine (exactly the sample's).
constexpr auto c_EmptyVM = uR"(
{
    "SchemaVersion": {
        "Major": 2,
        "Minor": 1
    },
    "Owner": "Sample",
    "VirtualMachine": {
        "Chipset": {
            "Uefi": {}
        },
        "ComputeTopology": {
            "Memory": {
                "Backing": "Physical",
                "SizeInMB": 1024
            },
            "Processor": {
                "Count": 2
            }
        }
    },
    "ShouldTerminateOnLastHandleClosed": true
})";

// Our additions, to check what the sample takes for granted.
static std::atomic<int> g_callbacks{0};
static std::atomic<bool> g_callbackOnMainThread{false};
static pthread_t g_mainThread;

int main()
{
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    g_mainThread = pthread_self();
    WCHAR id[64]; // the sample uses L"Test"; one id per process
    hcs_sample_id(id, 64, "operation_callback");
    std::printf("operation_callback: HcsCreateComputeSystem(\"%s\", c_EmptyVM, HcsCreateOperation(event, callback))\n",
                to_utf8(id).c_str());

    // ---- the sample, unchanged but for u"", %s and the counters ----
    // Use a windows event object as the context so that we can wait on it
    wil::unique_event callbackWait;
    callbackWait.create();
    unique_hcs_system system;
    THROW_IF_FAILED(HcsCreateComputeSystem(
        id,
        c_EmptyVM,
        HcsCreateOperation(
            callbackWait.get(),
            [](HCS_OPERATION operation, void* context)
            {
                g_callbacks++;
                g_callbackOnMainThread = pthread_equal(pthread_self(), g_mainThread) != 0;
                std::printf("  callback: operation %p, context %p\n", static_cast<void*>(operation), context);
                WI_ASSERT(HcsGetOperationType(operation) == HcsOperationTypeCreate);
                wil::unique_hlocal_string resultDoc;
                THROW_IF_FAILED_MSG(HcsGetOperationResult(operation, &resultDoc), "%s", to_utf8(resultDoc.get()).c_str());
                std::printf("  callback: type HcsOperationTypeCreate, HcsGetOperationResult -> S_OK\n");
                HcsCloseOperation(operation);
                std::printf("  callback: closed its own operation\n");
                SetEvent(context);
            }),
        nullptr,
        &system));
    std::printf("  create accepted (S_OK); waiting for the event\n");
    callbackWait.wait(INFINITE);
    // ---- end of the sample ----

    std::printf("  event signalled\n");
    WI_ASSERT(system);
    // Exactly once (rule 10): give a stray second call time to show up.
    usleep(200 * 1000);
    WI_ASSERT(g_callbacks == 1);
    std::printf("  the callback ran exactly once\n");
    // O-11: on a library thread, never on the caller's stack inside the starting call.
    WI_ASSERT(!g_callbackOnMainThread);
    std::printf("  it ran on a library thread\n");

    system.reset(); // last handle: the system is terminated (ShouldTerminateOnLastHandleClosed)
    std::printf("operation_callback: PASS\n");
    return 0;
}
