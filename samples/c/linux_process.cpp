// linux_process.cpp: the two flows HCS-API 8.5 gives as templates for want of an official
// sample, in C++17 with wil.h: Linux direct boot (create, start, SystemExited when the guest
// powers off) and a process in the guest (HcsCreateProcess, the std handles from
// HcsWaitForOperationResultAndProcessInfo read to EOF, HcsWaitForProcessExit, a
// ProcessExited callback, HcsCloseProcess). Rules 35, 39, 40, 41 and 44 of HCS-API 10.
//
// On Linux the std handles of HCS_PROCESS_INFORMATION are file descriptors, (HANDLE)fd,
// owned by the caller (computedefs.h): read() and close() them as a Windows program would
// ReadFile() and CloseHandle() its pipes.
//
// The guest is the project's: Debian's cloud kernel and the initramfs with the hcs-guest
// agent, as scripts/setup leaves them in .cache/guest (or $HCS_GUEST_DIR). It boots under
// QEMU (TCG on hosts whose KVM cannot run Linux), so this program needs qemu-system-x86_64.
// Exits 0 only if every documented result held.

#include <computecore.h>

#include "wil.h"

#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

namespace {

// The guest image directory: $HCS_GUEST_DIR, else .cache/guest of this repository (the
// Makefile passes it; a program run by hand from the repository root finds it too).
std::string GuestDir()
{
    const char* dir = std::getenv("HCS_GUEST_DIR");
    return dir != nullptr && *dir != 0 ? dir : ".cache/guest";
}

// The document of examples/linux-vm.json with absolute image paths: the service (hcsd)
// resolves relative paths in its own directory, not ours.
std::u16string LinuxVmDocument()
{
    std::string dir = GuestDir();
    char* absolute = realpath(dir.c_str(), nullptr);
    struct stat st;
    std::string kernel = std::string(absolute != nullptr ? absolute : dir.c_str()) + "/vmlinuz";
    std::string initrd = std::string(absolute != nullptr ? absolute : dir.c_str()) + "/initramfs.img";
    std::free(absolute);
    if (stat(kernel.c_str(), &st) != 0 || stat(initrd.c_str(), &st) != 0) {
        std::fprintf(stderr,
                     "FAIL: no guest image in %s (vmlinuz, initramfs.img): run scripts/setup, or set HCS_GUEST_DIR\n",
                     dir.c_str());
        std::_Exit(1);
    }
    std::string doc = R"({
        "SchemaVersion": { "Major": 2, "Minor": 2 },
        "Owner": "Sample",
        "VirtualMachine": {
            "Chipset": {
                "LinuxKernelDirect": {
                    "KernelFilePath": ")" + kernel + R"(",
                    "InitRdPath": ")" + initrd + R"(",
                    "KernelCmdLine": "console=ttyS0 quiet"
                }
            },
            "ComputeTopology": { "Memory": { "SizeInMB": 512 }, "Processor": { "Count": 2 } },
            "Devices": { "HvSocket": {} },
            "GuestConnection": {},
            "StopOnReset": true
        },
        "ShouldTerminateOnLastHandleClosed": true
    })";
    WCHAR* utf16 = hcs_utf16(doc.c_str());
    std::u16string out(utf16);
    std::free(utf16);
    return out;
}

int Fd(HANDLE handle) { return static_cast<int>(reinterpret_cast<intptr_t>(handle)); }

// Reads a std handle to EOF and closes it (the caller owns it).
std::string ReadToEnd(HANDLE handle)
{
    WI_ASSERT(handle != nullptr);
    std::string text;
    char buffer[4096];
    for (;;) {
        ssize_t n = read(Fd(handle), buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        WI_ASSERT(n >= 0);
        if (n == 0) {
            break;
        }
        text.append(buffer, static_cast<size_t>(n));
    }
    close(Fd(handle));
    return text;
}

// Starts a process (HCS-API 8.5) and returns its handle and std handles.
unique_hcs_process CreateProcess(HCS_SYSTEM system, PCWSTR parameters, HCS_PROCESS_INFORMATION* info)
{
    unique_hcs_operation operation(HcsCreateOperation(nullptr, nullptr));
    unique_hcs_process process;
    THROW_IF_FAILED(HcsCreateProcess(system, parameters, operation.get(), nullptr, &process));
    wil::unique_hlocal_string result;
    THROW_IF_FAILED_MSG(HcsWaitForOperationResultAndProcessInfo(operation.get(), INFINITE, info, &result),
                        "%s", to_utf8(result.get()).c_str());
    return process;
}

// HcsWaitForProcessExit's ProcessStatus, checked for the exit code.
void ExpectExitCode(HCS_PROCESS process, const char* exitCode)
{
    wil::unique_hlocal_string status;
    THROW_IF_FAILED(HcsWaitForProcessExit(process, 60000, &status));
    std::printf("    HcsWaitForProcessExit: %s\n", to_utf8(status.get()).c_str());
    THROW_HR_IF(E_FAIL, !hcs_doc_field_is(status.get(), "Exited", "true"));
    THROW_HR_IF(E_FAIL, !hcs_doc_field_is(status.get(), "ExitCode", exitCode));
}

struct ProcessEvents {
    wil::unique_event exited;
    std::string data;
    int count = 0;
};

void CALLBACK ProcessCallback(HCS_EVENT* event, void* context)
{
    auto* events = static_cast<ProcessEvents*>(context);
    // Rule 35: a process callback sees ProcessExited, never a system or operation event.
    WI_ASSERT(event->Type == HcsEventProcessExited);
    events->data = to_utf8(event->EventData);
    events->count++;
    events->exited.SetEvent();
}

struct SystemEvents {
    wil::unique_event exited;
    std::string data;
    // HcsEventSystemGuestConnectionClosed (HCS-API 4.1): once, before the exit.
    std::atomic<int> guestClosedBeforeExit{0};
    std::atomic<int> afterExit{0};
    bool exitSeen = false; // the callback's own: events of one handle are serial (rule 56)
};

void CALLBACK SystemCallback(HCS_EVENT* event, void* context)
{
    auto* events = static_cast<SystemEvents*>(context);
    if (events->exitSeen) {
        events->afterExit++;
    } else if (event->Type == HcsEventSystemGuestConnectionClosed) {
        WI_ASSERT(event->EventData == nullptr);
        events->guestClosedBeforeExit++;
    } else if (event->Type == HcsEventSystemExited) {
        events->exitSeen = true;
        events->data = to_utf8(event->EventData);
        events->exited.SetEvent();
    }
}

} // namespace

int main()
{
    WCHAR id[64];
    hcs_sample_id(id, 64, "linux_process");
    std::u16string document = LinuxVmDocument();

    // Linux direct boot (HCS-API 8.5): create, register for events, start. Start waits for
    // the guest agent because the document has a GuestConnection.
    std::printf("1. create and start a Linux VM (%s)\n", to_utf8(id).c_str());
    unique_hcs_operation operation(HcsCreateOperation(nullptr, nullptr));
    unique_hcs_system system;
    THROW_IF_FAILED(HcsCreateComputeSystem(id, document.c_str(), operation.get(), nullptr, &system));
    wil::unique_hlocal_string result;
    THROW_IF_FAILED_MSG(HcsWaitForOperationResult(operation.get(), INFINITE, &result), "%s",
                        to_utf8(result.get()).c_str());
    SystemEvents systemEvents;
    systemEvents.exited.create();
    THROW_IF_FAILED(HcsSetComputeSystemCallback(system.get(), HcsEventOptionNone, &systemEvents, SystemCallback));
    THROW_IF_FAILED(HcsStartComputeSystem(system.get(), operation.get(), nullptr));
    THROW_IF_FAILED_MSG(HcsWaitForOperationResult(operation.get(), INFINITE, &result), "%s",
                        to_utf8(result.get()).c_str());

    // The 8.5 process flow: echo, stdout read to EOF, the exit through HcsWaitForProcessExit.
    std::printf("2. HcsCreateProcess echo hi: stdout read to EOF, exit code 0\n");
    {
        HCS_PROCESS_INFORMATION info{};
        auto process = CreateProcess(
            system.get(), uR"({"CommandArgs":["/bin/echo","hi"],"CreateStdOutPipe":true,"CreateStdErrPipe":true})",
            &info);
        std::printf("    pid %u, stdin %d, stdout %d, stderr %d\n", static_cast<unsigned>(info.ProcessId),
                    Fd(info.StdInput), Fd(info.StdOutput), Fd(info.StdError));
        // Rule 39: only the requested pipes; no handle is one of our own std descriptors.
        THROW_HR_IF(E_FAIL, info.ProcessId == 0 || info.StdInput != nullptr);
        THROW_HR_IF(E_FAIL, Fd(info.StdOutput) <= 2 || Fd(info.StdError) <= 2);
        std::string out = ReadToEnd(info.StdOutput);
        std::string err = ReadToEnd(info.StdError);
        std::printf("    stdout \"%s\", stderr \"%s\"\n", out.c_str(), err.c_str());
        THROW_HR_IF(E_FAIL, out != "hi\n" || !err.empty());
        ExpectExitCode(process.get(), "0");
        // Rule 40: HcsGetProcessInfo gives the same process again.
        unique_hcs_operation infoOp(HcsCreateOperation(nullptr, nullptr));
        THROW_IF_FAILED(HcsGetProcessInfo(process.get(), infoOp.get()));
        HCS_PROCESS_INFORMATION again{};
        THROW_IF_FAILED(HcsWaitForOperationResultAndProcessInfo(infoOp.get(), INFINITE, &again, &result));
        THROW_HR_IF(E_FAIL, again.ProcessId != info.ProcessId);
    }

    // stdin: cat echoes what we write; closing our end is the EOF that ends it. Its exit
    // comes through HcsSetProcessCallback (rule 35), exactly once.
    std::printf("3. cat: stdin written and closed, ProcessExited callback once\n");
    {
        HCS_PROCESS_INFORMATION info{};
        auto process =
            CreateProcess(system.get(), uR"({"CommandArgs":["/bin/cat"],"CreateStdInPipe":true,"CreateStdOutPipe":true})",
                          &info);
        ProcessEvents events;
        events.exited.create();
        THROW_IF_FAILED(HcsSetProcessCallback(process.get(), HcsEventOptionNone, &events, ProcessCallback));
        static const char text[] = "through the guest and back\n";
        THROW_HR_IF(E_FAIL, write(Fd(info.StdInput), text, sizeof text - 1) != static_cast<ssize_t>(sizeof text - 1));
        close(Fd(info.StdInput));
        std::string out = ReadToEnd(info.StdOutput);
        THROW_HR_IF(E_FAIL, out != text);
        THROW_HR_IF(E_FAIL, !events.exited.wait(60000));
        std::printf("    ProcessExited: %s\n", events.data.c_str());
        THROW_HR_IF(E_FAIL, events.data.find("\"ExitCode\":0") == std::string::npos);
        usleep(200 * 1000);
        THROW_HR_IF(E_FAIL, events.count != 1);
    }

    // An exit code, read through HcsGetProcessProperties after the exit.
    std::printf("4. sh -c 'exit 7': ExitCode 7 in HcsGetProcessProperties\n");
    {
        HCS_PROCESS_INFORMATION info{};
        auto process = CreateProcess(system.get(), uR"({"CommandLine":"/bin/sh -c \"exit 7\""})", &info);
        ExpectExitCode(process.get(), "7");
        unique_hcs_operation propertiesOp(HcsCreateOperation(nullptr, nullptr));
        THROW_IF_FAILED(HcsGetProcessProperties(process.get(), propertiesOp.get(), nullptr));
        THROW_IF_FAILED(HcsWaitForOperationResult(propertiesOp.get(), INFINITE, &result));
        std::printf("    HcsGetProcessProperties: %s\n", to_utf8(result.get()).c_str());
        THROW_HR_IF(E_FAIL, !hcs_doc_field_is(result.get(), "ExitCode", "7"));
    }

    // Signals (rule 41): SIGTERM ends sleep (exit 128 + 15); afterwards a signal is refused
    // with HCS_E_PROCESS_ALREADY_STOPPED. HcsOpenProcess finds a running process by pid.
    std::printf("5. sleep: HcsOpenProcess by pid, HcsSignalProcess SIGTERM, then already stopped\n");
    {
        HCS_PROCESS_INFORMATION info{};
        auto process = CreateProcess(system.get(), uR"({"CommandArgs":["/bin/sleep","600"]})", &info);
        unique_hcs_process opened;
        THROW_IF_FAILED(HcsOpenProcess(system.get(), info.ProcessId, GENERIC_ALL, &opened));
        unique_hcs_operation signalOp(HcsCreateOperation(nullptr, nullptr));
        THROW_IF_FAILED(HcsSignalProcess(opened.get(), signalOp.get(), uR"({"Signal":15})"));
        THROW_IF_FAILED(HcsWaitForOperationResult(signalOp.get(), INFINITE, &result));
        ExpectExitCode(process.get(), "143");
        THROW_IF_FAILED(HcsSignalProcess(process.get(), signalOp.get(), uR"({"Signal":15})"));
        HRESULT hr = HcsWaitForOperationResult(signalOp.get(), INFINITE, &result);
        std::printf("    signal after the exit: %s\n", hcs_hresult_name(hr));
        THROW_HR_IF(E_FAIL, hr != HCS_E_PROCESS_ALREADY_STOPPED);
    }

    // HcsTerminateProcess ends a process that ignores nothing.
    std::printf("6. HcsTerminateProcess of a running sleep\n");
    {
        HCS_PROCESS_INFORMATION info{};
        auto process = CreateProcess(system.get(), uR"({"CommandArgs":["/bin/sleep","600"]})", &info);
        unique_hcs_operation terminateOp(HcsCreateOperation(nullptr, nullptr));
        THROW_IF_FAILED(HcsTerminateProcess(process.get(), terminateOp.get(), nullptr));
        THROW_IF_FAILED(HcsWaitForOperationResult(terminateOp.get(), INFINITE, &result));
        wil::unique_hlocal_string status;
        THROW_IF_FAILED(HcsWaitForProcessExit(process.get(), 60000, &status));
        std::printf("    HcsWaitForProcessExit: %s\n", to_utf8(status.get()).c_str());
        THROW_HR_IF(E_FAIL, !hcs_doc_field_is(status.get(), "Exited", "true"));
    }

    // Graceful shutdown through the agent: SystemExited with a GracefulExit status.
    std::printf("7. HcsShutDownComputeSystem: SystemExited, graceful\n");
    THROW_IF_FAILED(HcsShutDownComputeSystem(system.get(), operation.get(), nullptr));
    THROW_IF_FAILED_MSG(HcsWaitForOperationResult(operation.get(), INFINITE, &result), "%s",
                        to_utf8(result.get()).c_str());
    THROW_HR_IF(E_FAIL, !systemEvents.exited.wait(60000));
    std::printf("    SystemExited: %s\n", systemEvents.data.c_str());
    THROW_HR_IF(E_FAIL, systemEvents.data.find("GracefulExit") == std::string::npos);
    // HCS-API 4.1: the guest connection's close, expected here, was raised once before the exit.
    std::printf("    HcsEventSystemGuestConnectionClosed before it: %d\n", systemEvents.guestClosedBeforeExit.load());
    THROW_HR_IF(E_FAIL, systemEvents.guestClosedBeforeExit != 1);
    usleep(200 * 1000); // nothing follows the exit (rule 26)
    THROW_HR_IF(E_FAIL, systemEvents.afterExit != 0);

    std::printf("linux_process: every documented result held\n");
    return 0;
}
