// operation_wait.cpp: "Wait for operation synchronously", the first pattern of Microsoft's
// OperationCompletionSample.md (HCS-API 8.2 (a); rules 2, 5, 6, 16), ported to Linux with
// wil.h. Creates the empty VM c_EmptyVM, waits for the create with
// HcsWaitForOperationResult(INFINITE) and checks the documented results:
//   HcsCreateComputeSystem -> S_OK; the wait -> S_OK with no document (a successful create
//   returns none, HCS-API 3.2); the operation reports HcsOperationTypeCreate.
// Exits 0 only if all of them held (any failure prints the HRESULT and exits 1).

#include <computecore.h>

#include "wil.h"

#include <cstdio>
#include <string>
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

int main()
{
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    // The sample uses L"Test"; one id per process lets the programs run side by side.
    WCHAR id[64];
    hcs_sample_id(id, 64, "operation_wait");
    std::printf("operation_wait: HcsCreateComputeSystem(\"%s\", c_EmptyVM) and wait with INFINITE\n",
                to_utf8(id).c_str());

    // ---- the sample, unchanged but for u"" and %s ----
    unique_hcs_operation operation{ HcsCreateOperation(nullptr, nullptr) };
    unique_hcs_system system;
    THROW_IF_FAILED(HcsCreateComputeSystem(id, c_EmptyVM, operation.get(), nullptr, &system));
    wil::unique_hlocal_string resultDoc;
    THROW_IF_FAILED_MSG(HcsWaitForOperationResult(operation.get(), INFINITE, &resultDoc), "%s",
                        to_utf8(resultDoc.get()).c_str());
    // ---- end of the sample ----

    std::printf("  create accepted (S_OK), wait -> S_OK, system handle %p\n", static_cast<void*>(system.get()));
    WI_ASSERT(system);
    // A successful create returns no document (HCS-API 3.2, Tutorial.md).
    THROW_HR_IF(E_UNEXPECTED, resultDoc.get() != nullptr);
    std::printf("  no result document, as documented for a successful create\n");
    // Rule 6: the operation keeps the type of the call it tracked.
    WI_ASSERT(HcsGetOperationType(operation.get()) == HcsOperationTypeCreate);
    std::printf("  HcsGetOperationType -> HcsOperationTypeCreate\n");
    // Rule 16: reading again gives the same result without blocking.
    THROW_IF_FAILED(HcsGetOperationResult(operation.get(), &resultDoc));
    std::printf("  HcsGetOperationResult again -> S_OK\n");

    // Closing the only handle of a ShouldTerminateOnLastHandleClosed system terminates it.
    system.reset();
    operation.reset();
    std::printf("operation_wait: PASS\n");
    return 0;
}
