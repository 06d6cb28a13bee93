// utility.cpp: Microsoft's UtilityFunctionSample.md (HCS-API 3.6, 6, 8.3) ported to Linux with
// wil.h: the VM utility functions, all synchronous, each documented result checked. Works in
// a fresh directory /tmp/hcs-utility-<pid>, removed at the end.
//
//   HcsCreateEmptyRuntimeStateFile(dir/emptyfile.vmrs)       S_OK (the sample), the file exists
//   ... the same path again                                  HRESULT_FROM_WIN32(ERROR_FILE_EXISTS)
//   ... dir/missing/emptyfile.vmrs                           HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)
//   HcsGrantVmAccess(u"Sample", dir/emptyfile.vmrs)          S_OK (the sample)
//   HcsGrantVmAccess(u"Sample", dir/absent.vmrs)             HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND)
//   HcsCreateEmptyGuestStateFile: the same four results for dir/emptyfile.vmgs
//   HcsRevokeVmAccess(u"Sample", each file)                  S_OK
//   HcsGetProcessorCompatibilityFromSavedState(vmrs, &s)     E_NOTIMPL, s set to NULL
//
// Deviation from the sample: the relative path "emptyfile.vmrs" becomes a file in the
// temporary directory. Exits 0 only if every documented result held.

#include <computecore.h>

#include "wil.h"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

// Prints "  <step> -> 0x... (NAME)" and returns hr.
static HRESULT report(const std::string& step, HRESULT hr)
{
    std::printf("  %s -> 0x%08X (%s)\n", step.c_str(), static_cast<unsigned>(hr), hcs_hresult_name(hr));
    return hr;
}

// A UTF-16 copy of a UTF-8 path, freed with free().
using utf16_path = std::unique_ptr<WCHAR, decltype(&std::free)>;
static utf16_path to_utf16(const std::string& path)
{
    utf16_path converted(hcs_utf16(path.c_str()), &std::free);
    THROW_HR_IF(E_OUTOFMEMORY, !converted);
    return converted;
}

static bool exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

int main()
{
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    const std::string dir = "/tmp/hcs-utility-" + std::to_string(getpid());
    const std::string vmrs = dir + "/emptyfile.vmrs";
    const std::string vmgs = dir + "/emptyfile.vmgs";
    const std::string absent = dir + "/absent.vmrs";
    const std::string missingDir = dir + "/missing";
    std::printf("utility: UtilityFunctionSample.md in %s\n", dir.c_str());
    THROW_HR_IF(E_FAIL, mkdir(dir.c_str(), 0700) != 0);

    const HRESULT fileExists = HRESULT_FROM_WIN32(ERROR_FILE_EXISTS);
    const HRESULT pathNotFound = HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND);
    const HRESULT fileNotFound = HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND);

    //
    // Create the file and grant vm access to them (the sample: two THROW_IF_FAILED)
    //
    std::printf("create the runtime state file and grant vm access to it\n");
    // This assumes "Sample" has been used as the id for a compute system when created through
    // HcsCreateComputeSystem (the grant works before the system exists, HCS-API 3.6)
    THROW_IF_FAILED(report("HcsCreateEmptyRuntimeStateFile(" + vmrs + ")",
                           HcsCreateEmptyRuntimeStateFile(to_utf16(vmrs).get())));
    WI_ASSERT(exists(vmrs));
    THROW_IF_FAILED(report("HcsGrantVmAccess(\"Sample\", " + vmrs + ")",
                           HcsGrantVmAccess(u"Sample", to_utf16(vmrs).get())));

    std::printf("the documented failures\n");
    THROW_HR_IF(E_UNEXPECTED, report("HcsCreateEmptyRuntimeStateFile(the same path)",
                                     HcsCreateEmptyRuntimeStateFile(to_utf16(vmrs).get()))
                                  != fileExists);
    THROW_HR_IF(E_UNEXPECTED, report("HcsCreateEmptyRuntimeStateFile(" + missingDir + "/emptyfile.vmrs)",
                                     HcsCreateEmptyRuntimeStateFile(to_utf16(missingDir + "/emptyfile.vmrs").get()))
                                  != pathNotFound);
    THROW_HR_IF(E_UNEXPECTED, report("HcsGrantVmAccess(\"Sample\", " + absent + ")",
                                     HcsGrantVmAccess(u"Sample", to_utf16(absent).get()))
                                  != fileNotFound);
    WI_ASSERT(!exists(missingDir) && !exists(absent));

    //
    // The same for the guest state file (.vmgs)
    //
    std::printf("the guest state file\n");
    THROW_IF_FAILED(report("HcsCreateEmptyGuestStateFile(" + vmgs + ")",
                           HcsCreateEmptyGuestStateFile(to_utf16(vmgs).get())));
    WI_ASSERT(exists(vmgs));
    THROW_HR_IF(E_UNEXPECTED, report("HcsCreateEmptyGuestStateFile(the same path)",
                                     HcsCreateEmptyGuestStateFile(to_utf16(vmgs).get()))
                                  != fileExists);
    THROW_HR_IF(E_UNEXPECTED, report("HcsCreateEmptyGuestStateFile(" + missingDir + "/emptyfile.vmgs)",
                                     HcsCreateEmptyGuestStateFile(to_utf16(missingDir + "/emptyfile.vmgs").get()))
                                  != pathNotFound);
    THROW_IF_FAILED(report("HcsGrantVmAccess(\"Sample\", " + vmgs + ")",
                           HcsGrantVmAccess(u"Sample", to_utf16(vmgs).get())));

    //
    // Revoke the access again
    //
    std::printf("revoke vm access\n");
    THROW_IF_FAILED(report("HcsRevokeVmAccess(\"Sample\", " + vmrs + ")",
                           HcsRevokeVmAccess(u"Sample", to_utf16(vmrs).get())));
    THROW_IF_FAILED(report("HcsRevokeVmAccess(\"Sample\", " + vmgs + ")",
                           HcsRevokeVmAccess(u"Sample", to_utf16(vmgs).get())));

    //
    // Processor compatibility of a saved state: not implemented yet (HCS-API 3.6, rule 50)
    //
    std::printf("processor compatibility from saved state\n");
    {
        PCWSTR features = u"not reset"; // the call must store NULL
        THROW_HR_IF(E_UNEXPECTED, report("HcsGetProcessorCompatibilityFromSavedState(" + vmrs + ", &features)",
                                         HcsGetProcessorCompatibilityFromSavedState(to_utf16(vmrs).get(), &features))
                                      != E_NOTIMPL);
        WI_ASSERT(features == nullptr);
        std::printf("    features set to NULL\n");
    }

    // Clean-up.
    THROW_HR_IF(E_FAIL, unlink(vmrs.c_str()) != 0);
    THROW_HR_IF(E_FAIL, unlink(vmgs.c_str()) != 0);
    THROW_HR_IF(E_FAIL, rmdir(dir.c_str()) != 0);
    std::printf("removed %s\n", dir.c_str());

    std::printf("utility: PASS\n");
    return 0;
}
