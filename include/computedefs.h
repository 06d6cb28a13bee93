/*
 * computedefs.h: the types, enums, structs and HRESULT values of the Host Compute
 * Service (HCS) C API, as Windows' ComputeDefs.h and winerror.h give them, for Linux
 * x86-64. Functions are declared in computecore.h, which includes this file.
 *
 * Layouts and values are the Windows ones (HCS-API sections 4.1, 5 and 6); the check
 * run by scripts/test compiles this header and compares every enum value, sizeof and
 * offsetof with libcomputecore.so.
 *
 * Linux notes:
 *  - WCHAR is 16 bits (char16_t), not Linux's 32-bit wchar_t: write u"..." where
 *    Windows code writes L"...". Strings are NUL-terminated UTF-16; ill-formed UTF-16
 *    is refused with E_INVALIDARG.
 *  - HRESULT is int32_t (Windows' LONG is 32 bits; Linux's long is 64 bits).
 *  - WINAPI and CALLBACK expand to nothing: x86-64 Linux has one calling convention.
 *  - Std handles in HCS_PROCESS_INFORMATION are file descriptors: (HANDLE)(intptr_t)fd,
 *    owned by the caller (close() them); NULL means no pipe. We never hand out 0 to 2.
 *  - Tokens (identity, UserToken) and security descriptors: only NULL is accepted.
 *
 * The Windows base types are defined here unless a Windows-compatibility header
 * already defined them (_MINWINDEF_ or _WINDEF_) or HCS_NO_BASE_TYPES is defined.
 */
#ifndef HCS_COMPUTEDEFS_H
#define HCS_COMPUTEDEFS_H

#include <stddef.h>
#include <stdint.h>
#ifndef __cplusplus
#include <uchar.h>
#endif

/* ---------------------------------------------------------------------------------- */
/* Windows base types (HCS-API 5.1)                                                   */

#if !defined(_MINWINDEF_) && !defined(_WINDEF_) && !defined(HCS_NO_BASE_TYPES)
typedef int32_t HRESULT;
typedef uint32_t DWORD;
typedef uint64_t UINT64;
typedef int BOOL;
typedef void* HANDLE;
typedef void* HLOCAL;
typedef void* LPVOID;
typedef char16_t WCHAR;
typedef const WCHAR* PCWSTR;
typedef WCHAR* PWSTR;
#endif

#ifndef WINAPI
#define WINAPI
#endif
#ifndef CALLBACK
#define CALLBACK
#endif
#ifndef TRUE
#define TRUE 1
#endif
#ifndef FALSE
#define FALSE 0
#endif

#ifndef INFINITE
#define INFINITE 0xFFFFFFFFu
#endif
#ifndef GENERIC_ALL
#define GENERIC_ALL 0x10000000u
#endif

#ifndef SUCCEEDED
#define SUCCEEDED(hr) (((HRESULT)(hr)) >= 0)
#endif
#ifndef FAILED
#define FAILED(hr) (((HRESULT)(hr)) < 0)
#endif

/* Only NULL is accepted where the API takes a security descriptor. */
typedef struct SECURITY_DESCRIPTOR SECURITY_DESCRIPTOR;

/* ---------------------------------------------------------------------------------- */
/* HRESULT values (HCS-API 6)                                                          */

#ifndef FACILITY_WIN32
#define FACILITY_WIN32 7
#endif
#ifndef HRESULT_FROM_WIN32
#define HRESULT_FROM_WIN32(x) \
    ((HRESULT)(x) <= 0 ? ((HRESULT)(x)) \
                       : ((HRESULT)(((uint32_t)(x) & 0x0000FFFFu) | (FACILITY_WIN32 << 16) | 0x80000000u)))
#endif

/* Win32 error codes the HCS API returns as HRESULT_FROM_WIN32(code). */
#ifndef ERROR_FILE_NOT_FOUND
#define ERROR_FILE_NOT_FOUND 2
#endif
#ifndef ERROR_PATH_NOT_FOUND
#define ERROR_PATH_NOT_FOUND 3
#endif
#ifndef ERROR_ACCESS_DENIED
#define ERROR_ACCESS_DENIED 5
#endif
#ifndef ERROR_INVALID_HANDLE
#define ERROR_INVALID_HANDLE 6
#endif
#ifndef ERROR_INVALID_DATA
#define ERROR_INVALID_DATA 13
#endif
#ifndef ERROR_OUTOFMEMORY
#define ERROR_OUTOFMEMORY 14
#endif
#ifndef ERROR_NOT_SUPPORTED
#define ERROR_NOT_SUPPORTED 50
#endif
#ifndef ERROR_FILE_EXISTS
#define ERROR_FILE_EXISTS 80
#endif
#ifndef ERROR_INVALID_PARAMETER
#define ERROR_INVALID_PARAMETER 87
#endif
#ifndef ERROR_NOT_FOUND
#define ERROR_NOT_FOUND 1168
#endif

#ifndef S_OK
#define S_OK ((HRESULT)0x00000000)
#endif
#ifndef S_FALSE
#define S_FALSE ((HRESULT)0x00000001)
#endif
#ifndef E_NOTIMPL
#define E_NOTIMPL ((HRESULT)0x80004001u)
#endif
#ifndef E_POINTER
#define E_POINTER ((HRESULT)0x80004003u)
#endif
#ifndef E_FAIL
#define E_FAIL ((HRESULT)0x80004005u)
#endif
#ifndef E_UNEXPECTED
#define E_UNEXPECTED ((HRESULT)0x8000FFFFu)
#endif
#ifndef E_ACCESSDENIED
#define E_ACCESSDENIED ((HRESULT)0x80070005u)
#endif
#ifndef E_HANDLE
#define E_HANDLE ((HRESULT)0x80070006u)
#endif
#ifndef E_OUTOFMEMORY
#define E_OUTOFMEMORY ((HRESULT)0x8007000Eu)
#endif
#ifndef E_INVALIDARG
#define E_INVALIDARG ((HRESULT)0x80070057u)
#endif

#ifndef HCS_E_TERMINATED_DURING_START
#define HCS_E_TERMINATED_DURING_START ((HRESULT)0x80370100u)
#define HCS_E_IMAGE_MISMATCH ((HRESULT)0x80370101u)
#define HCS_E_HYPERV_NOT_INSTALLED ((HRESULT)0x80370102u)
#define HCS_E_INVALID_STATE ((HRESULT)0x80370105u)
#define HCS_E_UNEXPECTED_EXIT ((HRESULT)0x80370106u)
#define HCS_E_TERMINATED ((HRESULT)0x80370107u)
#define HCS_E_CONNECT_FAILED ((HRESULT)0x80370108u)
#define HCS_E_CONNECTION_TIMEOUT ((HRESULT)0x80370109u)
#define HCS_E_CONNECTION_CLOSED ((HRESULT)0x8037010Au)
#define HCS_E_UNKNOWN_MESSAGE ((HRESULT)0x8037010Bu)
#define HCS_E_UNSUPPORTED_PROTOCOL_VERSION ((HRESULT)0x8037010Cu)
#define HCS_E_INVALID_JSON ((HRESULT)0x8037010Du)
#define HCS_E_SYSTEM_NOT_FOUND ((HRESULT)0x8037010Eu)
#define HCS_E_SYSTEM_ALREADY_EXISTS ((HRESULT)0x8037010Fu)
#define HCS_E_SYSTEM_ALREADY_STOPPED ((HRESULT)0x80370110u)
#define HCS_E_PROTOCOL_ERROR ((HRESULT)0x80370111u)
#define HCS_E_INVALID_LAYER ((HRESULT)0x80370112u)
#define HCS_E_WINDOWS_INSIDER_REQUIRED ((HRESULT)0x80370113u)
#define HCS_E_SERVICE_NOT_AVAILABLE ((HRESULT)0x80370114u)
#define HCS_E_OPERATION_NOT_STARTED ((HRESULT)0x80370115u)
#define HCS_E_OPERATION_ALREADY_STARTED ((HRESULT)0x80370116u)
#define HCS_E_OPERATION_PENDING ((HRESULT)0x80370117u)
#define HCS_E_OPERATION_TIMEOUT ((HRESULT)0x80370118u)
#define HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET ((HRESULT)0x80370119u)
#define HCS_E_OPERATION_RESULT_ALLOCATION_FAILED ((HRESULT)0x8037011Au)
#define HCS_E_ACCESS_DENIED ((HRESULT)0x8037011Bu)
#define HCS_E_GUEST_CRITICAL_ERROR ((HRESULT)0x8037011Cu)
#define HCS_E_PROCESS_INFO_NOT_AVAILABLE ((HRESULT)0x8037011Du)
#define HCS_E_SERVICE_DISCONNECT ((HRESULT)0x8037011Eu)
#define HCS_E_PROCESS_ALREADY_STOPPED ((HRESULT)0x8037011Fu)
#define HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION ((HRESULT)0x80370120u)
#define HCS_E_OPERATION_ALREADY_CANCELLED ((HRESULT)0x80370121u)
#endif

/* ---------------------------------------------------------------------------------- */
/* Handles (DECLARE_HANDLE): opaque, non-NULL when valid                               */

typedef struct HCS_OPERATION__* HCS_OPERATION;
typedef struct HCS_SYSTEM__* HCS_SYSTEM;
typedef struct HCS_PROCESS__* HCS_PROCESS;
typedef struct HCS_CALLBACK__* HCS_CALLBACK; /* pre-1809 API; returned by no function */

#define HCS_INVALID_OPERATION_ID ((UINT64)-1)

/* Lets C++ combine flag enums with |, & and ~ as DEFINE_ENUM_FLAG_OPERATORS does. */
#ifdef __cplusplus
#define HCS_ENUM_FLAG_OPERATORS(T)                                                          \
    extern "C++" {                                                                          \
    inline T operator|(T a, T b) { return (T)((unsigned int)a | (unsigned int)b); }        \
    inline T operator&(T a, T b) { return (T)((unsigned int)a & (unsigned int)b); }        \
    inline T operator^(T a, T b) { return (T)((unsigned int)a ^ (unsigned int)b); }        \
    inline T operator~(T a) { return (T)(~(unsigned int)a); }                              \
    inline T& operator|=(T& a, T b) { return a = a | b; }                                  \
    inline T& operator&=(T& a, T b) { return a = a & b; }                                  \
    }
#else
#define HCS_ENUM_FLAG_OPERATORS(T)
#endif

/* ---------------------------------------------------------------------------------- */
/* Enums (HCS-API 4.1, 4.4, 5.2, 5.3)                                                  */

typedef enum HCS_OPERATION_TYPE {
    HcsOperationTypeNone = -1,
    HcsOperationTypeEnumerate = 0,
    HcsOperationTypeCreate = 1,
    HcsOperationTypeStart = 2,
    HcsOperationTypeShutdown = 3,
    HcsOperationTypePause = 4,
    HcsOperationTypeResume = 5,
    HcsOperationTypeSave = 6,
    HcsOperationTypeTerminate = 7,
    HcsOperationTypeModify = 8,
    HcsOperationTypeGetProperties = 9,
    HcsOperationTypeCreateProcess = 10,
    HcsOperationTypeSignalProcess = 11,
    HcsOperationTypeGetProcessInfo = 12,
    HcsOperationTypeGetProcessProperties = 13,
    HcsOperationTypeModifyProcess = 14,
    HcsOperationTypeCrash = 15,
    HcsOperationTypeReserved1 = 16,
    HcsOperationTypeReserved2 = 17,
    HcsOperationTypeReserved3 = 18,
    HcsOperationTypeLiveMigration = 19
} HCS_OPERATION_TYPE;

/* Values above 0x7FFFFFFF give this enum an unsigned 32-bit type on GCC and Clang:
 * the same size and bits as MSVC's int. */
typedef enum HCS_EVENT_TYPE {
    HcsEventInvalid = 0x00000000,
    HcsEventSystemExited = 0x00000001,
    HcsEventSystemCrashInitiated = 0x00000002,
    HcsEventSystemCrashReport = 0x00000003,
    HcsEventSystemRdpEnhancedModeStateChanged = 0x00000004,
    HcsEventSystemSiloJobCreated = 0x00000005,
    HcsEventSystemGuestConnectionClosed = 0x00000006,
    HcsEventProcessExited = 0x00010000,
    HcsEventOperationCallback = 0x01000000,
    HcsEventServiceDisconnect = 0x02000000,
    HcsEventGroupVmLifecycle = 0x80000002,
    HcsEventGroupLiveMigration = 0x80000003,
    HcsEventGroupOperationInfo = 0xC0000001
} HCS_EVENT_TYPE;

typedef enum HCS_EVENT_OPTIONS {
    HcsEventOptionNone = 0x00000000,
    HcsEventOptionEnableOperationCallbacks = 0x00000001,
    HcsEventOptionEnableVmLifecycle = 0x00000002,
    HcsEventOptionEnableLiveMigrationEvents = 0x00000004
} HCS_EVENT_OPTIONS;
HCS_ENUM_FLAG_OPERATORS(HCS_EVENT_OPTIONS)

typedef enum HCS_OPERATION_OPTIONS {
    HcsOperationOptionNone = 0x00000000,
    HcsOperationOptionProgressUpdate = 0x00000001,
    HcsOperationOptionReserved1 = 0x00000002
} HCS_OPERATION_OPTIONS;
HCS_ENUM_FLAG_OPERATORS(HCS_OPERATION_OPTIONS)

typedef enum HCS_RESOURCE_TYPE {
    HcsResourceTypeNone = 0,
    HcsResourceTypeFile = 1,
    HcsResourceTypeJob = 2,
    HcsResourceTypeComObject = 3,
    HcsResourceTypeSocket = 4
} HCS_RESOURCE_TYPE;

typedef enum HCS_CREATE_OPTIONS {
    HcsCreateOptions_1 = 0x00010000
} HCS_CREATE_OPTIONS;

/* The pre-1809 notification API: declared for completeness, used by no function. */
typedef enum HCS_NOTIFICATIONS {
    HcsNotificationInvalid = 0x00000000,
    HcsNotificationSystemExited = 0x00000001,
    HcsNotificationSystemCreateCompleted = 0x00000002,
    HcsNotificationSystemStartCompleted = 0x00000003,
    HcsNotificationSystemPauseCompleted = 0x00000004,
    HcsNotificationSystemResumeCompleted = 0x00000005,
    HcsNotificationSystemCrashReport = 0x00000006,
    HcsNotificationSystemSiloJobCreated = 0x00000007,
    HcsNotificationSystemSaveCompleted = 0x00000008,
    HcsNotificationSystemRdpEnhancedModeStateChanged = 0x00000009,
    HcsNotificationSystemShutdownFailed = 0x0000000A,
    HcsNotificationSystemShutdownCompleted = 0x0000000A,
    HcsNotificationSystemGetPropertiesCompleted = 0x0000000B,
    HcsNotificationSystemModifyCompleted = 0x0000000C,
    HcsNotificationSystemCrashInitiated = 0x0000000D,
    HcsNotificationSystemGuestConnectionClosed = 0x0000000E,
    HcsNotificationSystemOperationCompletion = 0x0000000F,
    HcsNotificationSystemPassThru = 0x00000010,
    HcsNotificationOperationProgressUpdate = 0x00000100,
    HcsNotificationProcessExited = 0x00010000,
    HcsNotificationServiceDisconnect = 0x01000000,
    HcsNotificationFlagsReserved = 0xF0000000
} HCS_NOTIFICATIONS;

typedef enum HCS_NOTIFICATION_FLAGS {
    HcsNotificationFlagSuccess = 0x00000000,
    HcsNotificationFlagFailure = 0x80000000
} HCS_NOTIFICATION_FLAGS;

/* ---------------------------------------------------------------------------------- */
/* Structs (HCS-API 4.1, 5.4; x86-64 offsets in the comments)                          */

typedef struct HCS_EVENT {
    HCS_EVENT_TYPE Type;     /* +0 */
    PCWSTR EventData;        /* +8  JSON or NULL; owned by the library, valid during the callback */
    HCS_OPERATION Operation; /* +16 only for HcsEventOperationCallback */
} HCS_EVENT;                 /* 24 bytes */

typedef struct HCS_PROCESS_INFORMATION {
    DWORD ProcessId;  /* +0 */
    DWORD Reserved;   /* +4  always 0 */
    HANDLE StdInput;  /* +8  (HANDLE)(intptr_t)fd when the pipe was requested, else NULL */
    HANDLE StdOutput; /* +16 */
    HANDLE StdError;  /* +24 */
} HCS_PROCESS_INFORMATION; /* 32 bytes */

/* ---------------------------------------------------------------------------------- */
/* Callbacks (HCS-API 4.1, 4.4). They run on the library's dispatcher threads, never  */
/* on the stack of the call that started the work; they may call any function,        */
/* including closing the operation or handle they were called for.                    */

typedef void(CALLBACK* HCS_OPERATION_COMPLETION)(HCS_OPERATION operation, void* context);
typedef void(CALLBACK* HCS_EVENT_CALLBACK)(HCS_EVENT* event, void* context);
typedef void(CALLBACK* HCS_NOTIFICATION_CALLBACK)(DWORD notificationType, void* context,
                                                  HRESULT notificationStatus,
                                                  PCWSTR notificationData);

typedef struct HCS_CREATE_OPTIONS_1 {
    HCS_CREATE_OPTIONS Version;               /* +0  HcsCreateOptions_1 */
    HANDLE UserToken;                         /* +8  NULL */
    const SECURITY_DESCRIPTOR* SecurityDescriptor; /* +16 NULL */
    HCS_EVENT_OPTIONS CallbackOptions;        /* +24 */
    void* CallbackContext;                    /* +32 */
    HCS_EVENT_CALLBACK Callback;              /* +40 */
} HCS_CREATE_OPTIONS_1;                       /* 48 bytes */

#endif /* HCS_COMPUTEDEFS_H */
