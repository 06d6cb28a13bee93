/*
 * computecore.h: the Host Compute Service (HCS) C API on Linux, exported by
 * libcomputecore.so with the names and signatures of Windows' ComputeCore.h
 * (HCS-API section 3). Types, enums and HRESULTs are in computedefs.h.
 *
 * Build and link:
 *     cc  -std=c11   -I include prog.c   -L target/release -lcomputecore
 *     c++ -std=c++17 -I include prog.cpp -L target/release -lcomputecore
 * and run with LD_LIBRARY_PATH (or an rpath) pointing at libcomputecore.so.
 *
 * Porting from Windows: include this header instead of <windows.h> + <ComputeCore.h>,
 * write u"..." instead of L"..." (WCHAR is char16_t), free result documents with
 * LocalFree or CoTaskMemFree (both exported here), and read std handles as file
 * descriptors. Asynchronous functions return S_OK when the request is accepted; the
 * outcome comes through the HCS_OPERATION (wait, completion callback, or the system's
 * event callback with HcsEventOptionEnableOperationCallbacks).
 *
 * Every function below is exported. Functions this implementation does not provide yet
 * return E_NOTIMPL synchronously; docs/conformance.md lists each function's status.
 */
#ifndef HCS_COMPUTECORE_H
#define HCS_COMPUTECORE_H

#include "computedefs.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------- */
/* Operations (HCS-API 3.1)                                                            */

HCS_OPERATION WINAPI HcsCreateOperation(const void* context, HCS_OPERATION_COMPLETION callback);
HCS_OPERATION WINAPI HcsCreateOperationWithNotifications(HCS_OPERATION_OPTIONS eventTypes,
                                                         const void* context,
                                                         HCS_EVENT_CALLBACK callback);
void WINAPI HcsCloseOperation(HCS_OPERATION operation);
void* WINAPI HcsGetOperationContext(HCS_OPERATION operation);
HRESULT WINAPI HcsSetOperationContext(HCS_OPERATION operation, const void* context);
HCS_SYSTEM WINAPI HcsGetComputeSystemFromOperation(HCS_OPERATION operation);
HCS_PROCESS WINAPI HcsGetProcessFromOperation(HCS_OPERATION operation);
HCS_OPERATION_TYPE WINAPI HcsGetOperationType(HCS_OPERATION operation);
UINT64 WINAPI HcsGetOperationId(HCS_OPERATION operation);
HRESULT WINAPI HcsGetOperationResult(HCS_OPERATION operation, PWSTR* resultDocument);
HRESULT WINAPI HcsGetOperationResultAndProcessInfo(HCS_OPERATION operation,
                                                   HCS_PROCESS_INFORMATION* processInformation,
                                                   PWSTR* resultDocument);
HRESULT WINAPI HcsWaitForOperationResult(HCS_OPERATION operation, DWORD timeoutMs,
                                         PWSTR* resultDocument);
HRESULT WINAPI HcsWaitForOperationResultAndProcessInfo(HCS_OPERATION operation, DWORD timeoutMs,
                                                       HCS_PROCESS_INFORMATION* processInformation,
                                                       PWSTR* resultDocument);
HRESULT WINAPI HcsSetOperationCallback(HCS_OPERATION operation, const void* context,
                                       HCS_OPERATION_COMPLETION callback);
HRESULT WINAPI HcsCancelOperation(HCS_OPERATION operation);
HRESULT WINAPI HcsGetOperationProperties(HCS_OPERATION operation, PCWSTR options,
                                         PWSTR* resultDocument);
HRESULT WINAPI HcsAddResourceToOperation(HCS_OPERATION operation, HCS_RESOURCE_TYPE type,
                                         PCWSTR uri, HANDLE handle);

/* ---------------------------------------------------------------------------------- */
/* Compute systems (HCS-API 3.2)                                                       */

HRESULT WINAPI HcsEnumerateComputeSystems(PCWSTR query, HCS_OPERATION operation);
HRESULT WINAPI HcsEnumerateComputeSystemsInNamespace(PCWSTR idNamespace, PCWSTR query,
                                                     HCS_OPERATION operation);
HRESULT WINAPI HcsCreateComputeSystem(PCWSTR id, PCWSTR configuration, HCS_OPERATION operation,
                                      const SECURITY_DESCRIPTOR* securityDescriptor,
                                      HCS_SYSTEM* computeSystem);
HRESULT WINAPI HcsCreateComputeSystemInNamespace(PCWSTR idNamespace, PCWSTR id,
                                                 PCWSTR configuration, HCS_OPERATION operation,
                                                 const HCS_CREATE_OPTIONS* options,
                                                 HCS_SYSTEM* computeSystem);
HRESULT WINAPI HcsOpenComputeSystem(PCWSTR id, DWORD requestedAccess, HCS_SYSTEM* computeSystem);
HRESULT WINAPI HcsOpenComputeSystemInNamespace(PCWSTR idNamespace, PCWSTR id,
                                               DWORD requestedAccess, HCS_SYSTEM* computeSystem);
void WINAPI HcsCloseComputeSystem(HCS_SYSTEM computeSystem);
HRESULT WINAPI HcsStartComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation,
                                     PCWSTR options);
HRESULT WINAPI HcsShutDownComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation,
                                        PCWSTR options);
HRESULT WINAPI HcsTerminateComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation,
                                         PCWSTR options);
HRESULT WINAPI HcsCrashComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation,
                                     PCWSTR options);
HRESULT WINAPI HcsPauseComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation,
                                     PCWSTR options);
HRESULT WINAPI HcsResumeComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation,
                                      PCWSTR options);
HRESULT WINAPI HcsSaveComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation,
                                    PCWSTR options);
HRESULT WINAPI HcsGetComputeSystemProperties(HCS_SYSTEM computeSystem, HCS_OPERATION operation,
                                             PCWSTR propertyQuery);
HRESULT WINAPI HcsModifyComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation,
                                      PCWSTR configuration, HANDLE identity);
HRESULT WINAPI HcsWaitForComputeSystemExit(HCS_SYSTEM computeSystem, DWORD timeoutMs,
                                           PWSTR* result);
HRESULT WINAPI HcsSetComputeSystemCallback(HCS_SYSTEM computeSystem,
                                           HCS_EVENT_OPTIONS callbackOptions, const void* context,
                                           HCS_EVENT_CALLBACK callback);
HRESULT WINAPI HcsInitializeLiveMigrationOnSource(HCS_SYSTEM computeSystem,
                                                  HCS_OPERATION operation, PCWSTR options);
HRESULT WINAPI HcsStartLiveMigrationOnSource(HCS_SYSTEM computeSystem, HCS_OPERATION operation,
                                             PCWSTR options);
HRESULT WINAPI HcsStartLiveMigrationTransfer(HCS_SYSTEM computeSystem, HCS_OPERATION operation,
                                             PCWSTR options);
HRESULT WINAPI HcsFinalizeLiveMigration(HCS_SYSTEM computeSystem, HCS_OPERATION operation,
                                        PCWSTR options);

/* ---------------------------------------------------------------------------------- */
/* Processes (HCS-API 3.4)                                                             */

HRESULT WINAPI HcsCreateProcess(HCS_SYSTEM computeSystem, PCWSTR processParameters,
                                HCS_OPERATION operation,
                                const SECURITY_DESCRIPTOR* securityDescriptor,
                                HCS_PROCESS* process);
HRESULT WINAPI HcsOpenProcess(HCS_SYSTEM computeSystem, DWORD processId, DWORD requestedAccess,
                              HCS_PROCESS* process);
void WINAPI HcsCloseProcess(HCS_PROCESS process);
HRESULT WINAPI HcsTerminateProcess(HCS_PROCESS process, HCS_OPERATION operation, PCWSTR options);
HRESULT WINAPI HcsSignalProcess(HCS_PROCESS process, HCS_OPERATION operation, PCWSTR options);
HRESULT WINAPI HcsGetProcessInfo(HCS_PROCESS process, HCS_OPERATION operation);
HRESULT WINAPI HcsGetProcessProperties(HCS_PROCESS process, HCS_OPERATION operation,
                                       PCWSTR propertyQuery);
HRESULT WINAPI HcsModifyProcess(HCS_PROCESS process, HCS_OPERATION operation, PCWSTR settings);
HRESULT WINAPI HcsSetProcessCallback(HCS_PROCESS process, HCS_EVENT_OPTIONS callbackOptions,
                                     void* context, HCS_EVENT_CALLBACK callback);
/* The Windows header names the process parameter "computeSystem" too. */
HRESULT WINAPI HcsWaitForProcessExit(HCS_PROCESS computeSystem, DWORD timeoutMs, PWSTR* result);

/* ---------------------------------------------------------------------------------- */
/* Host service (HCS-API 3.5)                                                          */

HRESULT WINAPI HcsGetServiceProperties(PCWSTR propertyQuery, PWSTR* result);
HRESULT WINAPI HcsModifyServiceSettings(PCWSTR settings, PWSTR* result);
HRESULT WINAPI HcsSubmitWerReport(PCWSTR settings);

/* ---------------------------------------------------------------------------------- */
/* VM utility functions (HCS-API 3.6)                                                  */

HRESULT WINAPI HcsCreateEmptyGuestStateFile(PCWSTR guestStateFilePath);
HRESULT WINAPI HcsCreateEmptyRuntimeStateFile(PCWSTR runtimeStateFilePath);
HRESULT WINAPI HcsGrantVmAccess(PCWSTR vmId, PCWSTR filePath);
HRESULT WINAPI HcsRevokeVmAccess(PCWSTR vmId, PCWSTR filePath);
HRESULT WINAPI HcsGrantVmGroupAccess(PCWSTR filePath);
HRESULT WINAPI HcsRevokeVmGroupAccess(PCWSTR filePath);
HRESULT WINAPI HcsGetProcessorCompatibilityFromSavedState(PCWSTR RuntimeFileName,
                                                          PCWSTR* ProcessorFeaturesString);

/* ---------------------------------------------------------------------------------- */
/* Freeing what the library returns (HCS-API 5.1, rule 51). Either frees any string    */
/* this library returned, and nothing else: other pointers are left alone.             */

HLOCAL WINAPI LocalFree(HLOCAL hMem);
void WINAPI CoTaskMemFree(LPVOID pv);

#ifdef __cplusplus
}
#endif

#endif /* HCS_COMPUTECORE_H */
