/*
 * tests/bad_input.c: what libcomputecore.so does with bad input, built with AddressSanitizer
 * (HCS-API section 6; O-3, O-6, O-12, O-13, O-17; rules 2, 9, 13, 14, 15, 16, 17, 18, 21, 32,
 * 49, 51). Every check prints its name and PASS/FAIL; the program exits 1 if any failed, and
 * ASan stops it at the first memory error. The HRESULTs expected are those of HCS-API
 * section 6 and rule 49:
 *   NULL required out-pointer or callback          -> E_POINTER     (0x80004003)
 *   NULL required input string, empty id, unknown
 *   flag bits, ill-formed UTF-16, misused reserved
 *   parameter (security descriptor, requestedAccess,
 *   options of start/terminate/resume, identity)   -> E_INVALIDARG  (0x80070057)
 *   NULL, made-up, closed or wrong-kind handle      -> E_HANDLE      (0x80070006)
 * all synchronously, leaving the operation un-armed and _Out_ handles NULL; malformed JSON
 * is accepted and fails through the operation with HCS_E_INVALID_JSON and a ResultError.
 * Closing NULL, made-up or closed handles, LocalFree of foreign pointers and a second
 * LocalFree of a document must do nothing (and not crash).
 */
#define _POSIX_C_SOURCE 200809L

#include <computecore.h>

#include "common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int g_passed = 0;
static int g_failed = 0;

static void check(int ok, const char* name, const char* detail)
{
    printf("%s  %s%s%s\n", ok ? "PASS" : "FAIL", name, detail[0] ? ": " : "", detail);
    if (ok) {
        g_passed++;
    } else {
        g_failed++;
    }
}

static void check_hr(const char* name, HRESULT got, HRESULT expected)
{
    char detail[200] = "";
    if (got != expected) {
        snprintf(detail, sizeof detail, "got 0x%08X (%s), expected 0x%08X (%s)", (unsigned)got,
                 hcs_hresult_name(got), (unsigned)expected, hcs_hresult_name(expected));
    }
    check(got == expected, name, detail);
}

/* Made-up handle values and sentinels the library must neither dereference nor keep. */
#define BOGUS_OP ((HCS_OPERATION)(uintptr_t)0x1234)
#define BOGUS_SYSTEM ((HCS_SYSTEM)(uintptr_t)0x1234)
#define BOGUS_PROCESS ((HCS_PROCESS)(uintptr_t)0x1234)
#define SENTINEL_DOC ((PWSTR)(uintptr_t)0x5A5A5A5A)
#define SENTINEL_SYSTEM ((HCS_SYSTEM)(uintptr_t)0x5A5A5A5A)
#define SENTINEL_PROCESS ((HCS_PROCESS)(uintptr_t)0x5A5A5A5A)

static const WCHAR c_EmptyVM[] = u"{\"SchemaVersion\":{\"Major\":2,\"Minor\":1},\"Owner\":\"Sample\","
                                 u"\"VirtualMachine\":{\"Chipset\":{\"Uefi\":{}},\"ComputeTopology\":"
                                 u"{\"Memory\":{\"Backing\":\"Physical\",\"SizeInMB\":1024},\"Processor\":{\"Count\":2}}},"
                                 u"\"ShouldTerminateOnLastHandleClosed\":true}";

/* Rule 9: after a synchronous failure the operation is still un-armed (new, never used). */
static void check_unarmed(const char* name, HCS_OPERATION op)
{
    char full[200];
    PWSTR doc = SENTINEL_DOC;
    HRESULT hr = HcsGetOperationResult(op, &doc);
    snprintf(full, sizeof full, "%s: operation still un-armed (NOT_STARTED, type None, doc NULL)", name);
    check(hr == HCS_E_OPERATION_NOT_STARTED && doc == NULL && HcsGetOperationType(op) == HcsOperationTypeNone, full,
          hcs_hresult_name(hr));
}

/* Waits for op; checks the HRESULT; returns the document (caller frees). */
static PWSTR wait_check(const char* name, HCS_OPERATION op, HRESULT expected)
{
    PWSTR doc = NULL;
    HRESULT hr = HcsWaitForOperationResult(op, INFINITE, &doc);
    check_hr(name, hr, expected);
    return doc;
}

static void noop_completion(HCS_OPERATION operation, void* context)
{
    (void)operation;
    (void)context;
}

static void noop_event(HCS_EVENT* event, void* context)
{
    (void)event;
    (void)context;
}

/* ---------------------------------------------------------------------------------------- */

static void operations_never_used(void)
{
    printf("\n-- a never-used operation (O-3, rules 1, 2, 13, 14)\n");
    int context = 0;
    HCS_OPERATION op = HcsCreateOperation(&context, NULL);
    check(op != NULL, "HcsCreateOperation -> non-NULL", "");
    check(HcsGetOperationType(op) == HcsOperationTypeNone, "HcsGetOperationType(new) == HcsOperationTypeNone", "");
    check(HcsGetOperationId(op) != HCS_INVALID_OPERATION_ID, "HcsGetOperationId(new) != HCS_INVALID_OPERATION_ID", "");
    check(HcsGetOperationContext(op) == &context, "HcsGetOperationContext(new) == creation context", "");
    check(HcsGetComputeSystemFromOperation(op) == NULL, "HcsGetComputeSystemFromOperation(new) == NULL", "");

    PWSTR doc = SENTINEL_DOC;
    check_hr("HcsGetOperationResult(never used)", HcsGetOperationResult(op, &doc), HCS_E_OPERATION_NOT_STARTED);
    check(doc == NULL, "HcsGetOperationResult(never used) sets *resultDocument to NULL", "");
    doc = SENTINEL_DOC;
    check_hr("HcsWaitForOperationResult(never used, INFINITE) returns at once", HcsWaitForOperationResult(op, INFINITE, &doc),
             HCS_E_OPERATION_NOT_STARTED);
    check(doc == NULL, "HcsWaitForOperationResult(never used) sets *resultDocument to NULL", "");
    check_hr("HcsWaitForOperationResult(never used, 0, NULL)", HcsWaitForOperationResult(op, 0, NULL),
             HCS_E_OPERATION_NOT_STARTED);
    check_hr("HcsGetOperationResult(never used, NULL)", HcsGetOperationResult(op, NULL), HCS_E_OPERATION_NOT_STARTED);
    HCS_PROCESS_INFORMATION info;
    memset(&info, 0x5A, sizeof info);
    doc = SENTINEL_DOC;
    check_hr("HcsGetOperationResultAndProcessInfo(never used)", HcsGetOperationResultAndProcessInfo(op, &info, &doc),
             HCS_E_OPERATION_NOT_STARTED);
    check(doc == NULL, "HcsGetOperationResultAndProcessInfo(never used) sets *resultDocument to NULL", "");

    check_hr("HcsCancelOperation -> E_NOTIMPL", HcsCancelOperation(op), E_NOTIMPL);
    check_hr("HcsSetOperationCallback(op, ctx, NULL callback) -> E_POINTER", HcsSetOperationCallback(op, &context, NULL),
             E_POINTER);
    check_hr("HcsSetOperationContext(op, NULL) -> S_OK", HcsSetOperationContext(op, NULL), S_OK);
    check(HcsGetOperationContext(op) == NULL, "HcsGetOperationContext after setting NULL == NULL", "");
    check_hr("HcsGetOperationProperties(op, NULL, NULL out) -> E_POINTER", HcsGetOperationProperties(op, NULL, NULL),
             E_POINTER);
    check_unarmed("after the refused calls", op);
    HcsCloseOperation(op);
}

static void operations_invalid_handles(void)
{
    printf("\n-- NULL and made-up operation handles (rules 14, 49; HCS-API 3.1)\n");
    /* The last one looks like this library's handles ("HCS" + a counter) but was never issued. */
    HCS_OPERATION handles[] = {NULL, BOGUS_OP, (HCS_OPERATION)(uintptr_t)0xFFFFFFFFFFFFFFF0ull,
                               (HCS_OPERATION)(uintptr_t)0x4843530000FFFFF0ull};
    const char* names[] = {"NULL", "0x1234", "0xFFFFFFFFFFFFFFF0", "0x4843530000FFFFF0"};
    for (size_t i = 0; i < sizeof handles / sizeof handles[0]; i++) {
        HCS_OPERATION op = handles[i];
        char name[160];
        PWSTR doc = SENTINEL_DOC;
        snprintf(name, sizeof name, "HcsGetOperationResult(%s) -> E_HANDLE", names[i]);
        check_hr(name, HcsGetOperationResult(op, &doc), E_HANDLE);
        snprintf(name, sizeof name, "HcsGetOperationResult(%s) leaves no document (*resultDocument NULL)", names[i]);
        check(doc == NULL, name, "");
        snprintf(name, sizeof name, "HcsWaitForOperationResult(%s, INFINITE) -> E_HANDLE", names[i]);
        check_hr(name, HcsWaitForOperationResult(op, INFINITE, NULL), E_HANDLE);
        snprintf(name, sizeof name, "HcsWaitForOperationResultAndProcessInfo(%s) -> E_HANDLE", names[i]);
        check_hr(name, HcsWaitForOperationResultAndProcessInfo(op, 0, NULL, NULL), E_HANDLE);
        snprintf(name, sizeof name, "HcsGetOperationId(%s) == HCS_INVALID_OPERATION_ID", names[i]);
        check(HcsGetOperationId(op) == HCS_INVALID_OPERATION_ID, name, "");
        snprintf(name, sizeof name, "HcsGetOperationType(%s) == HcsOperationTypeNone", names[i]);
        check(HcsGetOperationType(op) == HcsOperationTypeNone, name, "");
        snprintf(name, sizeof name, "HcsGetOperationContext(%s) == NULL", names[i]);
        check(HcsGetOperationContext(op) == NULL, name, "");
        snprintf(name, sizeof name, "HcsGetComputeSystemFromOperation(%s) == NULL", names[i]);
        check(HcsGetComputeSystemFromOperation(op) == NULL, name, "");
        snprintf(name, sizeof name, "HcsGetProcessFromOperation(%s) == NULL", names[i]);
        check(HcsGetProcessFromOperation(op) == NULL, name, "");
        snprintf(name, sizeof name, "HcsSetOperationContext(%s) -> E_HANDLE", names[i]);
        check_hr(name, HcsSetOperationContext(op, &doc), E_HANDLE);
        snprintf(name, sizeof name, "HcsSetOperationCallback(%s) -> E_HANDLE", names[i]);
        check_hr(name, HcsSetOperationCallback(op, NULL, noop_completion), E_HANDLE);
        snprintf(name, sizeof name, "HcsEnumerateComputeSystems(NULL, %s) -> E_HANDLE", names[i]);
        check_hr(name, HcsEnumerateComputeSystems(NULL, op), E_HANDLE);
        HcsCloseOperation(op);
        snprintf(name, sizeof name, "HcsCloseOperation(%s) does nothing", names[i]);
        check(1, name, "");
    }
}

static void operations_closed(void)
{
    printf("\n-- a closed operation handle (O-12, rule 49)\n");
    int context = 0;
    HCS_OPERATION op = HcsCreateOperation(&context, NULL);
    HcsCloseOperation(op);
    PWSTR doc = SENTINEL_DOC;
    check_hr("HcsGetOperationResult(closed) -> E_HANDLE", HcsGetOperationResult(op, &doc), E_HANDLE);
    check(doc == NULL, "HcsGetOperationResult(closed) sets *resultDocument to NULL", "");
    check_hr("HcsWaitForOperationResult(closed, INFINITE) -> E_HANDLE", HcsWaitForOperationResult(op, INFINITE, NULL),
             E_HANDLE);
    check(HcsGetOperationId(op) == HCS_INVALID_OPERATION_ID, "HcsGetOperationId(closed) == HCS_INVALID_OPERATION_ID", "");
    check(HcsGetOperationType(op) == HcsOperationTypeNone, "HcsGetOperationType(closed) == HcsOperationTypeNone", "");
    check(HcsGetOperationContext(op) == NULL, "HcsGetOperationContext(closed) == NULL", "");
    check_hr("HcsSetOperationContext(closed) -> E_HANDLE", HcsSetOperationContext(op, NULL), E_HANDLE);
    check_hr("HcsEnumerateComputeSystems(NULL, closed) -> E_HANDLE", HcsEnumerateComputeSystems(NULL, op), E_HANDLE);
    HcsCloseOperation(op);
    check(1, "HcsCloseOperation twice does not crash", "");

    /* A completed operation closed twice, and a completed one whose document was read. */
    HCS_OPERATION enumOp = HcsCreateOperation(NULL, NULL);
    check_hr("HcsEnumerateComputeSystems(NULL, op) accepted", HcsEnumerateComputeSystems(NULL, enumOp), S_OK);
    LocalFree(wait_check("enumerate -> S_OK", enumOp, S_OK));
    HcsCloseOperation(enumOp);
    HcsCloseOperation(enumOp);
    check(1, "a completed operation closed twice does not crash", "");
}

static void freeing(void)
{
    printf("\n-- LocalFree and CoTaskMemFree (HCS-API 5.1, rule 51)\n");
    check(LocalFree(NULL) == NULL, "LocalFree(NULL) returns NULL", "");
    CoTaskMemFree(NULL);
    check(1, "CoTaskMemFree(NULL) does nothing", "");

    /* Pointers the library did not return: it must leave them alone (ASan would report a
     * bad free, and our own free() below a double free). */
    WCHAR onStack[16] = u"not ours";
    LocalFree(onStack);
    CoTaskMemFree(onStack);
    check(onStack[0] == u'n', "LocalFree / CoTaskMemFree of a stack address do nothing", "");
    WCHAR* onHeap = (WCHAR*)malloc(32);
    memcpy(onHeap, u"mine", 10);
    LocalFree(onHeap);
    CoTaskMemFree(onHeap);
    check(onHeap[0] == u'm', "LocalFree / CoTaskMemFree of a malloc'd address do nothing", "");
    free(onHeap); /* still ours */

    /* Documents: one from LocalFree, a copy from CoTaskMemFree (rule 16: separate copies). */
    HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
    HcsEnumerateComputeSystems(NULL, op);
    PWSTR first = wait_check("enumerate for a document -> S_OK", op, S_OK);
    PWSTR second = NULL;
    check_hr("a second read of the result -> S_OK", HcsGetOperationResult(op, &second), S_OK);
    check(first != NULL && second != NULL && first != second, "a second read gives a separately allocated document", "");
    char* a = hcs_utf8(first);
    char* b = hcs_utf8(second);
    check(strcmp(a, b) == 0, "... with equal text", "");
    free(a);
    free(b);
    if (first != NULL) {
        LocalFree(first + 1); /* inside a document, not its start: not something we got */
        check(first[0] == u'[', "LocalFree(document + 1) does nothing", "");
    }
    check(LocalFree(first) == NULL, "LocalFree(document) returns NULL", "");
    LocalFree(first);
    check(1, "a second LocalFree of the same document does not crash", "");
    CoTaskMemFree(second);
    CoTaskMemFree(second);
    check(1, "CoTaskMemFree of a document, twice, does not crash", "");
    HcsCloseOperation(op);
}

/* ---------------------------------------------------------------------------------------- */

static void create_arguments(const WCHAR* id)
{
    printf("\n-- HcsCreateComputeSystem arguments (rules 21, 49)\n");
    HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
    HCS_SYSTEM system = SENTINEL_SYSTEM;

    check_hr("create(NULL id) -> E_INVALIDARG", HcsCreateComputeSystem(NULL, c_EmptyVM, op, NULL, &system),
             E_INVALIDARG);
    check(system == NULL, "create(NULL id) sets *computeSystem to NULL", "");
    check_unarmed("create(NULL id)", op);
    system = SENTINEL_SYSTEM;
    check_hr("create(empty id) -> E_INVALIDARG", HcsCreateComputeSystem(u"", c_EmptyVM, op, NULL, &system), E_INVALIDARG);
    check(system == NULL, "create(empty id) sets *computeSystem to NULL", "");
    system = SENTINEL_SYSTEM;
    check_hr("create(NULL configuration) -> E_INVALIDARG", HcsCreateComputeSystem(id, NULL, op, NULL, &system),
             E_INVALIDARG);
    check(system == NULL, "create(NULL configuration) sets *computeSystem to NULL", "");
    check_hr("create(NULL computeSystem) -> E_POINTER", HcsCreateComputeSystem(id, c_EmptyVM, op, NULL, NULL), E_POINTER);
    system = SENTINEL_SYSTEM;
    check_hr("create(NULL operation) -> E_HANDLE", HcsCreateComputeSystem(id, c_EmptyVM, NULL, NULL, &system), E_HANDLE);
    check(system == NULL, "create(NULL operation) sets *computeSystem to NULL", "");
    system = SENTINEL_SYSTEM;
    check_hr("create(operation 0x1234) -> E_HANDLE", HcsCreateComputeSystem(id, c_EmptyVM, BOGUS_OP, NULL, &system),
             E_HANDLE);
    int descriptor = 0;
    system = SENTINEL_SYSTEM;
    check_hr("create(non-NULL security descriptor) -> E_INVALIDARG",
             HcsCreateComputeSystem(id, c_EmptyVM, op, (const SECURITY_DESCRIPTOR*)&descriptor, &system), E_INVALIDARG);
    check(system == NULL, "create(security descriptor) sets *computeSystem to NULL", "");

    /* Ill-formed UTF-16: lone surrogates in the id and in the document. */
    const WCHAR loneHigh[] = {u'b', u'a', u'd', 0xD800, u'x', 0};
    const WCHAR loneLow[] = {u'b', u'a', u'd', 0xDC00, 0};
    const WCHAR highAtEnd[] = {u'b', u'a', u'd', 0xD800, 0};
    check_hr("create(id with a lone high surrogate 0xD800) -> E_INVALIDARG",
             HcsCreateComputeSystem(loneHigh, c_EmptyVM, op, NULL, &system), E_INVALIDARG);
    check_hr("create(id with a lone low surrogate 0xDC00) -> E_INVALIDARG",
             HcsCreateComputeSystem(loneLow, c_EmptyVM, op, NULL, &system), E_INVALIDARG);
    check_hr("create(id ending in a high surrogate) -> E_INVALIDARG",
             HcsCreateComputeSystem(highAtEnd, c_EmptyVM, op, NULL, &system), E_INVALIDARG);
    WCHAR badDocument[sizeof c_EmptyVM / sizeof c_EmptyVM[0]];
    memcpy(badDocument, c_EmptyVM, sizeof c_EmptyVM);
    for (size_t i = 0; badDocument[i] != 0; i++) {
        if (badDocument[i] == u'S' && badDocument[i + 1] == u'a') { /* "Sample" -> "\xD800ample" */
            badDocument[i] = 0xD800;
            break;
        }
    }
    system = SENTINEL_SYSTEM;
    check_hr("create(document with a lone high surrogate) -> E_INVALIDARG",
             HcsCreateComputeSystem(id, badDocument, op, NULL, &system), E_INVALIDARG);
    check(system == NULL, "... and *computeSystem is NULL", "");
    check_unarmed("after every refused create", op);

    /* Malformed JSON is the host's to judge: accepted, then HCS_E_INVALID_JSON (rule 17). */
    system = NULL;
    check_hr("create(malformed JSON) accepted -> S_OK",
             HcsCreateComputeSystem(id, u"{\"SchemaVersion\": {\"Major\": 2, ", op, NULL, &system), S_OK);
    check(system != NULL, "create(malformed JSON) returns a handle", "");
    PWSTR doc = wait_check("create(malformed JSON) completes with HCS_E_INVALID_JSON", op, HCS_E_INVALID_JSON);
    char* text = hcs_utf8(doc);
    printf("      error document: %s\n", text);
    free(text);
    check(doc != NULL, "... with an error document", "");
    check(hcs_doc_field_is(doc, "Error", "-2143878899"), "... whose Error is HCS_E_INVALID_JSON (-2143878899)", "");
    check(hcs_doc_contains(doc, "\"ErrorMessage\""), "... and an ErrorMessage", "");
    LocalFree(doc);
    LocalFree(doc); /* double LocalFree of a result document */
    check(1, "double LocalFree of the error document does not crash", "");
    HcsCloseComputeSystem(system);
    HcsCloseComputeSystem(system);
    check(1, "the handle of a failed create, closed twice, does not crash", "");

    /* A well-formed document with an unknown property: HCS_E_INVALID_JSON too (rule 46). */
    HCS_OPERATION op2 = HcsCreateOperation(NULL, NULL);
    check_hr("create(unknown property) accepted -> S_OK",
             HcsCreateComputeSystem(id, u"{\"SchemaVersion\":{\"Major\":2,\"Minor\":1},\"Bogus\":1,\"VirtualMachine\":{}}",
                                    op2, NULL, &system),
             S_OK);
    doc = wait_check("create(unknown property) completes with HCS_E_INVALID_JSON", op2, HCS_E_INVALID_JSON);
    check(hcs_doc_contains(doc, "Bogus"), "... and the error names the property", "");
    LocalFree(doc);
    HcsCloseComputeSystem(system);
    HcsCloseOperation(op2);
    HcsCloseOperation(op);
}

static void counting_event(HCS_EVENT* event, void* context)
{
    (void)event;
    (void)context;
}

static void system_arguments(const WCHAR* id, HCS_SYSTEM system)
{
    printf("\n-- system functions: reserved parameters, handles, flags (rules 21, 32, 49)\n");
    HCS_OPERATION op = HcsCreateOperation(NULL, NULL);

    check_hr("start(options \"{}\") -> E_INVALIDARG", HcsStartComputeSystem(system, op, u"{}"), E_INVALIDARG);
    check_hr("terminate(options \"{}\") -> E_INVALIDARG", HcsTerminateComputeSystem(system, op, u"{}"), E_INVALIDARG);
    check_hr("resume(options \"{}\") -> E_INVALIDARG", HcsResumeComputeSystem(system, op, u"{}"), E_INVALIDARG);
    check_hr("modify(NULL configuration) -> E_INVALIDARG", HcsModifyComputeSystem(system, op, NULL, NULL), E_INVALIDARG);
    int token = 0;
    check_hr("modify(non-NULL identity) -> E_INVALIDARG",
             HcsModifyComputeSystem(system, op,
                                    u"{\"ResourcePath\":\"VirtualMachine/ComputeTopology/Memory/SizeInMB\","
                                    u"\"RequestType\":\"Update\",\"Settings\":1024}",
                                    &token),
             E_INVALIDARG);
    check_hr("start(NULL system) -> E_HANDLE", HcsStartComputeSystem(NULL, op, NULL), E_HANDLE);
    check_hr("start(system 0x1234) -> E_HANDLE", HcsStartComputeSystem(BOGUS_SYSTEM, op, NULL), E_HANDLE);
    check_hr("start(NULL operation) -> E_HANDLE", HcsStartComputeSystem(system, NULL, NULL), E_HANDLE);
    check_hr("start(operation 0x1234) -> E_HANDLE", HcsStartComputeSystem(system, BOGUS_OP, NULL), E_HANDLE);
    check_hr("start(an operation handle as the system) -> E_HANDLE",
             HcsStartComputeSystem((HCS_SYSTEM)(void*)op, op, NULL), E_HANDLE);
    check_hr("get properties(system 0x1234) -> E_HANDLE", HcsGetComputeSystemProperties(BOGUS_SYSTEM, op, NULL),
             E_HANDLE);
    check_hr("pause(NULL system) -> E_HANDLE", HcsPauseComputeSystem(NULL, op, NULL), E_HANDLE);
    check_hr("terminate(NULL system) -> E_HANDLE", HcsTerminateComputeSystem(NULL, op, NULL), E_HANDLE);
    check_unarmed("after the refused system calls", op);

    PWSTR doc = SENTINEL_DOC;
    check_hr("HcsWaitForComputeSystemExit(NULL) -> E_HANDLE", HcsWaitForComputeSystemExit(NULL, 0, &doc), E_HANDLE);
    doc = SENTINEL_DOC;
    check_hr("HcsWaitForComputeSystemExit(never started, 0) -> HCS_E_OPERATION_TIMEOUT",
             HcsWaitForComputeSystemExit(system, 0, &doc), HCS_E_OPERATION_TIMEOUT);
    check(doc == NULL, "... with *result NULL", "");

    /* Event options: bits 0x1, 0x2, 0x4 only; a refused registration registers nothing. */
    check_hr("set callback(unknown option bit 0x8) -> E_INVALIDARG",
             HcsSetComputeSystemCallback(system, (HCS_EVENT_OPTIONS)0x8, NULL, noop_event), E_INVALIDARG);
    check_hr("set callback(unknown option bit 0x80000000) -> E_INVALIDARG",
             HcsSetComputeSystemCallback(system, (HCS_EVENT_OPTIONS)0x80000000u, NULL, noop_event), E_INVALIDARG);
    check_hr("set callback(NULL callback) -> E_POINTER",
             HcsSetComputeSystemCallback(system, HcsEventOptionNone, NULL, NULL), E_POINTER);
    check_hr("set callback(NULL system) -> E_HANDLE", HcsSetComputeSystemCallback(NULL, HcsEventOptionNone, NULL, noop_event),
             E_HANDLE);
    check_hr("set callback(system 0x1234) -> E_HANDLE",
             HcsSetComputeSystemCallback(BOGUS_SYSTEM, HcsEventOptionNone, NULL, noop_event), E_HANDLE);
    check_hr("set callback(valid) after the refused ones -> S_OK",
             HcsSetComputeSystemCallback(system, HcsEventOptionNone, NULL, counting_event), S_OK);
    check_hr("a second set callback on the handle -> HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET",
             HcsSetComputeSystemCallback(system, HcsEventOptionNone, NULL, noop_event),
             HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET);

    /* Open. */
    HCS_SYSTEM other = SENTINEL_SYSTEM;
    check_hr("open(NULL id) -> E_INVALIDARG", HcsOpenComputeSystem(NULL, GENERIC_ALL, &other), E_INVALIDARG);
    check(other == NULL, "open(NULL id) sets *computeSystem to NULL", "");
    other = SENTINEL_SYSTEM;
    check_hr("open(empty id) -> E_INVALIDARG", HcsOpenComputeSystem(u"", GENERIC_ALL, &other), E_INVALIDARG);
    other = SENTINEL_SYSTEM;
    check_hr("open(requestedAccess 0) -> E_INVALIDARG", HcsOpenComputeSystem(id, 0, &other), E_INVALIDARG);
    check(other == NULL, "open(requestedAccess 0) sets *computeSystem to NULL", "");
    check_hr("open(requestedAccess GENERIC_READ 0x80000000) -> E_INVALIDARG",
             HcsOpenComputeSystem(id, 0x80000000u, &other), E_INVALIDARG);
    check_hr("open(NULL computeSystem) -> E_POINTER", HcsOpenComputeSystem(id, GENERIC_ALL, NULL), E_POINTER);
    const WCHAR loneHigh[] = {u'x', 0xD800, 0};
    check_hr("open(id with a lone surrogate) -> E_INVALIDARG", HcsOpenComputeSystem(loneHigh, GENERIC_ALL, &other),
             E_INVALIDARG);
    other = SENTINEL_SYSTEM;
    check_hr("open(unknown id) -> HCS_E_SYSTEM_NOT_FOUND",
             HcsOpenComputeSystem(u"bad_input-no-such-system", GENERIC_ALL, &other), HCS_E_SYSTEM_NOT_FOUND);
    check(other == NULL, "open(unknown id) sets *computeSystem to NULL", "");

    /* A second handle, closed: every use gives E_HANDLE; the system lives on (rule 57). */
    other = NULL;
    check_hr("open(id, GENERIC_ALL) -> S_OK", HcsOpenComputeSystem(id, GENERIC_ALL, &other), S_OK);
    HcsCloseComputeSystem(other);
    check_hr("start(closed handle) -> E_HANDLE", HcsStartComputeSystem(other, op, NULL), E_HANDLE);
    check_hr("get properties(closed handle) -> E_HANDLE", HcsGetComputeSystemProperties(other, op, NULL), E_HANDLE);
    check_hr("set callback(closed handle) -> E_HANDLE",
             HcsSetComputeSystemCallback(other, HcsEventOptionNone, NULL, noop_event), E_HANDLE);
    check_hr("HcsWaitForComputeSystemExit(closed handle) -> E_HANDLE", HcsWaitForComputeSystemExit(other, 0, NULL),
             E_HANDLE);
    HcsCloseComputeSystem(other);
    check(1, "HcsCloseComputeSystem twice does not crash", "");
    HcsCloseComputeSystem(NULL);
    HcsCloseComputeSystem(BOGUS_SYSTEM);
    check(1, "HcsCloseComputeSystem(NULL / 0x1234) does nothing", "");

    /* Closing a handle of the wrong kind closes nothing. */
    HcsCloseOperation((HCS_OPERATION)(void*)system);
    HcsCloseComputeSystem((HCS_SYSTEM)(void*)op);
    check_unarmed("HcsCloseComputeSystem(an operation handle) left the operation open", op);
    check_hr("get properties after HcsCloseOperation(a system handle) -> S_OK",
             HcsGetComputeSystemProperties(system, op, NULL), S_OK);
    doc = wait_check("... the system is still there: S_OK", op, S_OK);
    check(hcs_doc_field_is(doc, "State", "\"Created\""), "... and still Created", "");
    LocalFree(doc);

    /* Rule 15: ProcessInfo getters on a non-process operation, with a non-NULL pointer. */
    HCS_PROCESS_INFORMATION info;
    check_hr("HcsGetOperationResultAndProcessInfo(get properties op, &info) -> E_INVALIDARG",
             HcsGetOperationResultAndProcessInfo(op, &info, NULL), E_INVALIDARG);
    check_hr("HcsGetOperationResultAndProcessInfo(get properties op, NULL info) -> S_OK",
             HcsGetOperationResultAndProcessInfo(op, NULL, NULL), S_OK);

    /* Enumerate: malformed query through the operation, NULL operation synchronously. */
    check_hr("enumerate(malformed query) accepted -> S_OK", HcsEnumerateComputeSystems(u"{\"Ids\": [", op), S_OK);
    doc = wait_check("enumerate(malformed query) completes with HCS_E_INVALID_JSON", op, HCS_E_INVALID_JSON);
    check(doc != NULL, "... with an error document", "");
    LocalFree(doc);

    /* Processes: invalid handles and arguments. */
    HCS_PROCESS process = SENTINEL_PROCESS;
    check_hr("create process(NULL parameters) -> E_INVALIDARG", HcsCreateProcess(system, NULL, op, NULL, &process),
             E_INVALIDARG);
    check(process == NULL, "... sets *process to NULL", "");
    check_hr("create process(NULL process) -> E_POINTER",
             HcsCreateProcess(system, u"{\"CommandArgs\":[\"/bin/true\"]}", op, NULL, NULL), E_POINTER);
    check_hr("terminate process(0x1234) -> E_HANDLE", HcsTerminateProcess(BOGUS_PROCESS, op, NULL), E_HANDLE);
    check_hr("get process info(NULL) -> E_HANDLE", HcsGetProcessInfo(NULL, op), E_HANDLE);
    HcsCloseProcess(NULL);
    HcsCloseProcess(BOGUS_PROCESS);
    check(1, "HcsCloseProcess(NULL / 0x1234) does nothing", "");

    /* Service. */
    check_hr("HcsGetServiceProperties(query, NULL result) -> E_POINTER",
             HcsGetServiceProperties(u"{\"PropertyTypes\":[\"Basic\"]}", NULL), E_POINTER);

    HcsCloseOperation(op);
}

static void duplicate_id(const WCHAR* id, HCS_SYSTEM system)
{
    printf("\n-- an id in use (rule 18)\n");
    HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
    HCS_SYSTEM duplicate = NULL;
    check_hr("create(id in use) accepted -> S_OK", HcsCreateComputeSystem(id, c_EmptyVM, op, NULL, &duplicate), S_OK);
    PWSTR doc = wait_check("create(id in use) completes with HCS_E_SYSTEM_ALREADY_EXISTS", op, HCS_E_SYSTEM_ALREADY_EXISTS);
    check(doc != NULL, "... with an error document", "");
    LocalFree(doc);
    HcsCloseComputeSystem(duplicate); /* must not touch the existing system */
    check_hr("the existing system still answers: get properties -> S_OK", HcsGetComputeSystemProperties(system, op, NULL),
             S_OK);
    LocalFree(wait_check("... completes with S_OK", op, S_OK));
    HcsCloseOperation(op);
}

/* Waits for op and checks both the HRESULT and that the error document carries it (HCS-API 2.3). */
static void wait_failure(const char* name, HCS_OPERATION op, HRESULT expected)
{
    PWSTR doc = wait_check(name, op, expected);
    char value[16];
    snprintf(value, sizeof value, "%d", (int)expected);
    char full[200];
    snprintf(full, sizeof full, "... with a ResultError whose Error is %d", (int)expected);
    check(hcs_doc_field_is(doc, "Error", value), full, "");
    LocalFree(doc);
}

static void wrong_state(HCS_SYSTEM system)
{
    printf("\n-- requests illegal in the Created state, through the operation (section 3.3, rule 25)\n");
    HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
    check_hr("pause(created) accepted", HcsPauseComputeSystem(system, op, NULL), S_OK);
    wait_failure("pause(created) completes with HCS_E_INVALID_STATE", op, HCS_E_INVALID_STATE);
    check_hr("resume(created) accepted", HcsResumeComputeSystem(system, op, NULL), S_OK);
    wait_failure("resume(created) completes with HCS_E_INVALID_STATE", op, HCS_E_INVALID_STATE);
    check_hr("save(created) accepted",
             HcsSaveComputeSystem(system, op, u"{\"SaveType\":\"ToFile\",\"SaveStateFilePath\":\"/tmp/bad_input.vmrs\"}"),
             S_OK);
    wait_failure("save(created) completes with HCS_E_INVALID_STATE", op, HCS_E_INVALID_STATE);
    check_hr("crash(created) accepted", HcsCrashComputeSystem(system, op, u"{\"Type\":\"CrashGuest\"}"), S_OK);
    wait_failure("crash(created) completes with HCS_E_INVALID_STATE", op, HCS_E_INVALID_STATE);
    HcsCloseOperation(op);
}

static void pending_start(HCS_SYSTEM system)
{
    printf("\n-- a pending operation (O-4, O-8, O-14; rules 3, 4, 8)\n");
    HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
    check_hr("start accepted", HcsStartComputeSystem(system, op, NULL), S_OK);
    PWSTR doc = SENTINEL_DOC;
    HRESULT hr = HcsGetOperationResult(op, &doc);
    if (hr == HCS_E_OPERATION_PENDING) {
        check(doc == NULL, "HcsGetOperationResult(pending) -> PENDING with *resultDocument NULL", "");
        check_hr("HcsSetOperationCallback(pending) -> HCS_E_OPERATION_ALREADY_STARTED",
                 HcsSetOperationCallback(op, NULL, noop_completion), HCS_E_OPERATION_ALREADY_STARTED);
        check_hr("HcsSetOperationContext(pending) -> HCS_E_OPERATION_ALREADY_STARTED", HcsSetOperationContext(op, &doc),
                 HCS_E_OPERATION_ALREADY_STARTED);
        check_hr("enumerate(pending operation) -> HCS_E_OPERATION_ALREADY_STARTED", HcsEnumerateComputeSystems(NULL, op),
                 HCS_E_OPERATION_ALREADY_STARTED);
        check(HcsGetOperationType(op) == HcsOperationTypeStart, "... and the operation still tracks the start", "");
    } else {
        /* The start may finish before we look; the pending checks are then skipped. */
        printf("SKIP  pending checks: the start had completed (0x%08X) before we looked\n", (unsigned)hr);
        LocalFree(doc);
    }
    LocalFree(wait_check("start completes with S_OK", op, S_OK));
    check(HcsGetOperationContext(op) == NULL, "the context is still the creation one (NULL)", "");
    HcsCloseOperation(op);
}

static void unusual_documents(void)
{
    printf("\n-- unusual but well-formed strings (rules 17, 44)\n");
    HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
    const WCHAR* documents[] = {u"", u"null", u"[]", u"{}", u"   "};
    const char* names[] = {"\"\"", "null", "[]", "{}", "spaces"};
    for (size_t i = 0; i < sizeof documents / sizeof documents[0]; i++) {
        HCS_SYSTEM system = NULL;
        char name[120];
        snprintf(name, sizeof name, "create(document %s) accepted", names[i]);
        check_hr(name, HcsCreateComputeSystem(u"bad_input-unusual", documents[i], op, NULL, &system), S_OK);
        snprintf(name, sizeof name, "create(document %s) completes with HCS_E_INVALID_JSON", names[i]);
        wait_failure(name, op, HCS_E_INVALID_JSON);
        HcsCloseComputeSystem(system);
    }

    /* A valid surrogate pair (U+1F600) and other non-ASCII characters in the id round-trip. */
    WCHAR id[64];
    hcs_sample_id(id, 48, "bad_input-\xC3\xA9t\xC3\xA9");
    size_t n = 0;
    while (id[n] != 0) {
        n++;
    }
    id[n++] = 0xD83D;
    id[n++] = 0xDE00;
    id[n] = 0;
    HCS_SYSTEM system = NULL;
    check_hr("create(id with an accent and U+1F600) accepted", HcsCreateComputeSystem(id, c_EmptyVM, op, NULL, &system),
             S_OK);
    LocalFree(wait_check("... completes with S_OK", op, S_OK));
    check_hr("get properties accepted", HcsGetComputeSystemProperties(system, op, NULL), S_OK);
    PWSTR doc = wait_check("... completes with S_OK", op, S_OK);
    char* idText = hcs_utf8(id);
    char quoted[128];
    snprintf(quoted, sizeof quoted, "\"%s\"", idText);
    check(hcs_doc_field_is(doc, "Id", quoted), "the document's Id is the same UTF-16 text", idText);
    free(idText);
    LocalFree(doc);
    HCS_SYSTEM other = NULL;
    check_hr("open(that id) -> S_OK", HcsOpenComputeSystem(id, GENERIC_ALL, &other), S_OK);
    HcsCloseComputeSystem(other);
    HcsCloseComputeSystem(system);
    HcsCloseOperation(op);
}

static void after_exit(const WCHAR* id, HCS_SYSTEM system)
{
    printf("\n-- requests after the system exited (rules 24, 27, 30)\n");
    HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
    check_hr("terminate accepted", HcsTerminateComputeSystem(system, op, NULL), S_OK);
    LocalFree(wait_check("terminate completes with S_OK", op, S_OK));
    PWSTR doc = NULL;
    check_hr("HcsWaitForComputeSystemExit(exited, 0) -> S_OK", HcsWaitForComputeSystemExit(system, 0, &doc), S_OK);
    check(hcs_doc_field_is(doc, "ExitType", "\"ForcedExit\"") && hcs_doc_field_is(doc, "Status", "0"),
          "... with {Status 0, ExitType ForcedExit}", "");
    LocalFree(doc);
    check_hr("terminate(exited) accepted", HcsTerminateComputeSystem(system, op, NULL), S_OK);
    wait_failure("terminate(exited) completes with HCS_E_SYSTEM_ALREADY_STOPPED", op, HCS_E_SYSTEM_ALREADY_STOPPED);
    check_hr("shutdown(exited) accepted", HcsShutDownComputeSystem(system, op, NULL), S_OK);
    wait_failure("shutdown(exited) completes with HCS_E_SYSTEM_ALREADY_STOPPED", op, HCS_E_SYSTEM_ALREADY_STOPPED);
    check_hr("start(exited) accepted", HcsStartComputeSystem(system, op, NULL), S_OK);
    wait_failure("start(exited) completes with HCS_E_SYSTEM_NOT_FOUND", op, HCS_E_SYSTEM_NOT_FOUND);
    check_hr("get properties(exited) accepted", HcsGetComputeSystemProperties(system, op, NULL), S_OK);
    wait_failure("get properties(exited) completes with HCS_E_SYSTEM_NOT_FOUND", op, HCS_E_SYSTEM_NOT_FOUND);
    HCS_SYSTEM other = SENTINEL_SYSTEM;
    check_hr("open(id of the exited system) -> HCS_E_SYSTEM_NOT_FOUND", HcsOpenComputeSystem(id, GENERIC_ALL, &other),
             HCS_E_SYSTEM_NOT_FOUND);
    check(other == NULL, "... and *computeSystem is NULL", "");
    /* The id is free again: a new create with it succeeds (rule 27). */
    other = NULL;
    check_hr("create(the freed id) accepted", HcsCreateComputeSystem(id, c_EmptyVM, op, NULL, &other), S_OK);
    LocalFree(wait_check("create(the freed id) completes with S_OK", op, S_OK));
    HcsCloseComputeSystem(other);
    HcsCloseOperation(op);
}

/* HCS-API O-7: a completed operation may be re-used while its completion callback still runs
 * on another thread; the re-use waits until that callback has returned, so each tracked call
 * gets exactly one callback and sees its own result. Here the callback is held until a helper
 * thread releases it 50 ms later; the re-arm must return S_OK only after the callback returned. */
static atomic_int g_callbackEntered;
static atomic_int g_callbackRelease;
static atomic_int g_callbackReturned;
static void blocking_completion(HCS_OPERATION operation, void* context)
{
    (void)operation;
    (void)context;
    if (atomic_fetch_add(&g_callbackEntered, 1) == 0) {
        while (!atomic_load(&g_callbackRelease)) {
            struct timespec t = {0, 1000000L};
            nanosleep(&t, NULL);
        }
        atomic_store(&g_callbackReturned, 1);
    }
}

static void* release_later(void* unused)
{
    (void)unused;
    struct timespec t = {0, 50000000L};
    nanosleep(&t, NULL);
    atomic_store(&g_callbackRelease, 1);
    return NULL;
}

static void rearm_during_callback(void)
{
    printf("\n-- O-7: re-arming a completed operation while its callback runs waits for the callback\n");
    HCS_OPERATION op = HcsCreateOperation(NULL, blocking_completion);
    HcsEnumerateComputeSystems(NULL, op);
    LocalFree(wait_check("enumerate completes with S_OK", op, S_OK));
    while (atomic_load(&g_callbackEntered) == 0) {
        struct timespec t = {0, 1000000L};
        nanosleep(&t, NULL);
    }
    pthread_t releaser;
    pthread_create(&releaser, NULL, release_later, NULL);
    check_hr("re-arm while the previous callback runs -> S_OK", HcsEnumerateComputeSystems(NULL, op), S_OK);
    check(atomic_load(&g_callbackReturned) == 1, "the re-arm returned only after the previous callback returned", "");
    LocalFree(wait_check("the re-armed enumerate completes with S_OK", op, S_OK));
    pthread_join(releaser, NULL);
    HcsCloseOperation(op); /* waits for a callback still running */
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    WCHAR id[64];
    hcs_sample_id(id, 64, "bad_input");
    printf("bad_input: argument and handle errors of libcomputecore.so (under AddressSanitizer)\n");

    operations_never_used();
    operations_invalid_handles();
    operations_closed();
    freeing();
    rearm_during_callback();

    /* One real, never-started VM for the system checks. */
    printf("\n-- the VM used below\n");
    HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
    HCS_SYSTEM system = NULL;
    check_hr("create the empty VM -> S_OK", HcsCreateComputeSystem(id, c_EmptyVM, op, NULL, &system), S_OK);
    LocalFree(wait_check("... completes with S_OK", op, S_OK));
    HcsCloseOperation(op);

    create_arguments(id);
    system_arguments(id, system);
    duplicate_id(id, system);
    wrong_state(system);
    pending_start(system);
    after_exit(id, system);
    unusual_documents();

    HcsCloseComputeSystem(system);
    HcsCloseComputeSystem(system);
    check(1, "the system handle closed twice does not crash", "");

    printf("\nbad_input: %d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
