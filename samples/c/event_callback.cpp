// event_callback.cpp: "Use event callback's operation completion", the third pattern of
// Microsoft's OperationCompletionSample.md (HCS-API 8.2 (c), 4.3; O-19, rules 9, 33, 55),
// ported to Linux with wil.h.
//   1. Create c_EmptyVM with a callback-less operation that is not kept, then at once
//      register an event callback with HcsEventOptionEnableOperationCallbacks: the create's
//      completion arrives there as one HcsEventOperationCallback (EventData NULL), even if
//      the create finished before the registration (rule 55); the callback reads the result
//      (S_OK), closes event->Operation and signals.
//   2. HcsStartComputeSystem with an operation that has its own completion callback must
//      fail synchronously with HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET (rule 33); the
//      operation stays un-armed (rule 9) and the system is not started: a second handle
//      (without event callback, so its operation can be waited on) reads State "Created".
// Exits 0 only if every documented result held.

#include <computecore.h>

#include "wil.h"

#include <atomic>
#include <cstdio>
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

static std::atomic<int> g_events{0}; // our addition: every event the callback received

int main()
{
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    WCHAR id[64]; // the sample uses L"Test"; one id per process
    hcs_sample_id(id, 64, "event_callback");
    std::printf("event_callback: create \"%s\" with an unkept callback-less operation, then "
                "HcsSetComputeSystemCallback(HcsEventOptionEnableOperationCallbacks)\n",
                to_utf8(id).c_str());

    // ---- the sample, unchanged but for u"", %s, the counter and the operation kept below ----
    // Use a windows event object as the context so that we can wait on it
    wil::unique_event callbackWait;
    callbackWait.create();
    unique_hcs_system system;
    THROW_IF_FAILED(HcsCreateComputeSystem(id, c_EmptyVM, HcsCreateOperation(nullptr, nullptr), nullptr, &system));
    THROW_IF_FAILED(HcsSetComputeSystemCallback(
        system.get(),
        HcsEventOptionEnableOperationCallbacks,
        callbackWait.get(),
        [](HCS_EVENT* event, void* context)
        {
            g_events++;
            std::printf("  event callback: Type 0x%08X, Operation %p\n", static_cast<unsigned>(event->Type),
                        static_cast<void*>(event->Operation));
            WI_ASSERT(event->Type == HcsEventOperationCallback);
            WI_ASSERT(event->EventData == nullptr);                                  // rule 33
            WI_ASSERT(HcsGetOperationType(event->Operation) == HcsOperationTypeCreate); // rule 6
            wil::unique_hlocal_string resultDoc;
            THROW_IF_FAILED_MSG(HcsGetOperationResult(event->Operation, &resultDoc), "%s",
                                to_utf8(resultDoc.get()).c_str());
            std::printf("  event callback: HcsEventOperationCallback for the create, result S_OK\n");
            HcsCloseOperation(event->Operation);
            SetEvent(context);
        }));
    std::printf("  create accepted, callback registered; waiting for the create's completion event\n");
    callbackWait.wait(INFINITE);

    // However, once the system callback has been set, using an operation with callback fails!
    callbackWait.create();
    // The sample passes HcsCreateOperation(...) inline and never closes it; we keep it to close it.
    unique_hcs_operation startOperation{ HcsCreateOperation(nullptr, [](HCS_OPERATION, void*) {}) };
    HRESULT result = HcsStartComputeSystem(
        system.get(),
        startOperation.get(),
        nullptr);
    std::printf("  HcsStartComputeSystem with an operation that has a callback -> 0x%08X (%s)\n",
                static_cast<unsigned>(result), hcs_hresult_name(result));
    THROW_HR_IF(E_UNEXPECTED, result != HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET);
    // ---- end of the sample ----

    // Rule 9: the refused call left the operation un-armed.
    WI_ASSERT(HcsGetOperationType(startOperation.get()) == HcsOperationTypeNone);
    wil::unique_hlocal_string resultDoc;
    result = HcsGetOperationResult(startOperation.get(), &resultDoc);
    THROW_HR_IF(E_UNEXPECTED, result != HCS_E_OPERATION_NOT_STARTED || resultDoc);
    std::printf("  the refused operation is un-armed: type None, HCS_E_OPERATION_NOT_STARTED\n");

    // The system did not start. Handle 1 routes callback-less operations to its event
    // callback, so read the state through a second handle (callbacks belong to handles).
    unique_hcs_system second;
    THROW_IF_FAILED(HcsOpenComputeSystem(id, GENERIC_ALL, &second));
    unique_hcs_operation query{ HcsCreateOperation(nullptr, nullptr) };
    THROW_IF_FAILED(HcsGetComputeSystemProperties(second.get(), query.get(), nullptr));
    THROW_IF_FAILED_MSG(HcsWaitForOperationResult(query.get(), INFINITE, &resultDoc), "%s",
                        to_utf8(resultDoc.get()).c_str());
    THROW_HR_IF(E_UNEXPECTED, !resultDoc);
    std::printf("  properties through a second handle: %s\n", to_utf8(resultDoc.get()).c_str());
    THROW_HR_IF(E_UNEXPECTED, !hcs_doc_field_is(resultDoc.get(), "State", "\"Created\""));
    std::printf("  State is \"Created\": the system was not started\n");

    // Exactly one event reached handle 1: the create's completion; nothing for the refused start.
    usleep(200 * 1000);
    WI_ASSERT(g_events == 1);
    std::printf("  handle 1 received exactly one event\n");

    second.reset(); // another handle is still open: the system lives on (rule 57)
    system.reset(); // the last one: ShouldTerminateOnLastHandleClosed terminates it
    std::printf("event_callback: PASS\n");
    return 0;
}
