/*
 * common.h: small helpers shared by the C samples, the C tests and wil.h; not part of
 * the HCS API. Valid C11 and C++17.
 *
 *   hcs_hresult_name(hr)     the name of an HRESULT of HCS-API section 6 ("?" if unknown)
 *   hcs_utf8(s)              UTF-16 (PCWSTR) -> malloc'd UTF-8, for printing: Linux printf
 *                            has no %ws; NULL gives "(null)"; ill-formed UTF-16 gives U+FFFD
 *   hcs_utf16(s)             UTF-8 -> malloc'd UTF-16, for ids built at run time
 *   hcs_doc_contains(d, s)   whether the UTF-16 document d contains the UTF-8 text s
 *   hcs_doc_field_is(d, k, v) whether some member "k" of the JSON document d has the value v,
 *                            given as JSON text (e.g. "\"Created\"" or "0"), whatever the
 *                            spacing around the colon
 *   hcs_sample_id(buf, ...)  "<prefix>-<pid>" as UTF-16: one id per process, so that the
 *                            programs can run concurrently without HCS_E_SYSTEM_ALREADY_EXISTS
 *
 * Every string these functions return is freed with free() (not LocalFree: it is ours).
 */
#ifndef HCS_SAMPLES_COMMON_H
#define HCS_SAMPLES_COMMON_H

#include <computecore.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline const char* hcs_hresult_name(HRESULT hr)
{
    /* HCS-API section 6, in its order; the values come from computedefs.h. */
    static const struct {
        HRESULT hr;
        const char* name;
    } names[] = {
        {S_OK, "S_OK"},
        {S_FALSE, "S_FALSE"},
        {E_NOTIMPL, "E_NOTIMPL"},
        {E_POINTER, "E_POINTER"},
        {E_FAIL, "E_FAIL"},
        {E_UNEXPECTED, "E_UNEXPECTED"},
        {E_INVALIDARG, "E_INVALIDARG"},
        {E_OUTOFMEMORY, "E_OUTOFMEMORY"},
        {E_ACCESSDENIED, "E_ACCESSDENIED"},
        {E_HANDLE, "E_HANDLE"},
        {(HRESULT)0x80070002u, "HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND)"},
        {(HRESULT)0x80070003u, "HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)"},
        {(HRESULT)0x8007000Du, "HRESULT_FROM_WIN32(ERROR_INVALID_DATA)"},
        {(HRESULT)0x80070032u, "HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED)"},
        {(HRESULT)0x80070050u, "HRESULT_FROM_WIN32(ERROR_FILE_EXISTS)"},
        {(HRESULT)0x80070490u, "HRESULT_FROM_WIN32(ERROR_NOT_FOUND)"},
        {HCS_E_TERMINATED_DURING_START, "HCS_E_TERMINATED_DURING_START"},
        {HCS_E_IMAGE_MISMATCH, "HCS_E_IMAGE_MISMATCH"},
        {HCS_E_HYPERV_NOT_INSTALLED, "HCS_E_HYPERV_NOT_INSTALLED"},
        {HCS_E_INVALID_STATE, "HCS_E_INVALID_STATE"},
        {HCS_E_UNEXPECTED_EXIT, "HCS_E_UNEXPECTED_EXIT"},
        {HCS_E_TERMINATED, "HCS_E_TERMINATED"},
        {HCS_E_CONNECT_FAILED, "HCS_E_CONNECT_FAILED"},
        {HCS_E_CONNECTION_TIMEOUT, "HCS_E_CONNECTION_TIMEOUT"},
        {HCS_E_CONNECTION_CLOSED, "HCS_E_CONNECTION_CLOSED"},
        {HCS_E_UNKNOWN_MESSAGE, "HCS_E_UNKNOWN_MESSAGE"},
        {HCS_E_UNSUPPORTED_PROTOCOL_VERSION, "HCS_E_UNSUPPORTED_PROTOCOL_VERSION"},
        {HCS_E_INVALID_JSON, "HCS_E_INVALID_JSON"},
        {HCS_E_SYSTEM_NOT_FOUND, "HCS_E_SYSTEM_NOT_FOUND"},
        {HCS_E_SYSTEM_ALREADY_EXISTS, "HCS_E_SYSTEM_ALREADY_EXISTS"},
        {HCS_E_SYSTEM_ALREADY_STOPPED, "HCS_E_SYSTEM_ALREADY_STOPPED"},
        {HCS_E_PROTOCOL_ERROR, "HCS_E_PROTOCOL_ERROR"},
        {HCS_E_INVALID_LAYER, "HCS_E_INVALID_LAYER"},
        {HCS_E_WINDOWS_INSIDER_REQUIRED, "HCS_E_WINDOWS_INSIDER_REQUIRED"},
        {HCS_E_SERVICE_NOT_AVAILABLE, "HCS_E_SERVICE_NOT_AVAILABLE"},
        {HCS_E_OPERATION_NOT_STARTED, "HCS_E_OPERATION_NOT_STARTED"},
        {HCS_E_OPERATION_ALREADY_STARTED, "HCS_E_OPERATION_ALREADY_STARTED"},
        {HCS_E_OPERATION_PENDING, "HCS_E_OPERATION_PENDING"},
        {HCS_E_OPERATION_TIMEOUT, "HCS_E_OPERATION_TIMEOUT"},
        {HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET, "HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET"},
        {HCS_E_OPERATION_RESULT_ALLOCATION_FAILED, "HCS_E_OPERATION_RESULT_ALLOCATION_FAILED"},
        {HCS_E_ACCESS_DENIED, "HCS_E_ACCESS_DENIED"},
        {HCS_E_GUEST_CRITICAL_ERROR, "HCS_E_GUEST_CRITICAL_ERROR"},
        {HCS_E_PROCESS_INFO_NOT_AVAILABLE, "HCS_E_PROCESS_INFO_NOT_AVAILABLE"},
        {HCS_E_SERVICE_DISCONNECT, "HCS_E_SERVICE_DISCONNECT"},
        {HCS_E_PROCESS_ALREADY_STOPPED, "HCS_E_PROCESS_ALREADY_STOPPED"},
        {HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION, "HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION"},
        {HCS_E_OPERATION_ALREADY_CANCELLED, "HCS_E_OPERATION_ALREADY_CANCELLED"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (names[i].hr == hr) {
            return names[i].name;
        }
    }
    return "?";
}

static inline char* hcs_utf8(PCWSTR s)
{
    if (s == NULL) {
        char* none = (char*)malloc(sizeof "(null)");
        if (none != NULL) {
            memcpy(none, "(null)", sizeof "(null)");
        }
        return none;
    }
    size_t units = 0;
    while (s[units] != 0) {
        units++;
    }
    /* At most 3 UTF-8 bytes per UTF-16 unit (a surrogate pair: 4 bytes for 2 units). */
    char* out = (char*)malloc(units * 3 + 1);
    if (out == NULL) {
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < units; i++) {
        uint32_t c = s[i];
        if (c >= 0xD800 && c <= 0xDBFF && i + 1 < units && s[i + 1] >= 0xDC00 && s[i + 1] <= 0xDFFF) {
            c = 0x10000 + ((c - 0xD800) << 10) + (uint32_t)(s[i + 1] - 0xDC00);
            i++;
        } else if (c >= 0xD800 && c <= 0xDFFF) {
            c = 0xFFFD; /* lone surrogate */
        }
        if (c < 0x80) {
            out[o++] = (char)c;
        } else if (c < 0x800) {
            out[o++] = (char)(0xC0 | (c >> 6));
            out[o++] = (char)(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            out[o++] = (char)(0xE0 | (c >> 12));
            out[o++] = (char)(0x80 | ((c >> 6) & 0x3F));
            out[o++] = (char)(0x80 | (c & 0x3F));
        } else {
            out[o++] = (char)(0xF0 | (c >> 18));
            out[o++] = (char)(0x80 | ((c >> 12) & 0x3F));
            out[o++] = (char)(0x80 | ((c >> 6) & 0x3F));
            out[o++] = (char)(0x80 | (c & 0x3F));
        }
    }
    out[o] = 0;
    return out;
}

static inline WCHAR* hcs_utf16(const char* s)
{
    size_t len = strlen(s);
    WCHAR* out = (WCHAR*)malloc((len + 1) * sizeof(WCHAR));
    if (out == NULL) {
        return NULL;
    }
    size_t o = 0;
    const unsigned char* p = (const unsigned char*)s;
    while (*p != 0) {
        uint32_t c = *p++;
        int more = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
        if (more > 0) {
            c &= 0x3Fu >> more;
        }
        for (; more > 0 && (*p & 0xC0) == 0x80; more--) {
            c = (c << 6) | (*p++ & 0x3Fu);
        }
        if (c >= 0x10000) {
            c -= 0x10000;
            out[o++] = (WCHAR)(0xD800 + (c >> 10));
            out[o++] = (WCHAR)(0xDC00 + (c & 0x3FF));
        } else {
            out[o++] = (WCHAR)c;
        }
    }
    out[o] = 0;
    return out;
}

static inline int hcs_doc_contains(PCWSTR doc, const char* text)
{
    if (doc == NULL) {
        return 0;
    }
    char* utf8 = hcs_utf8(doc);
    int found = utf8 != NULL && strstr(utf8, text) != NULL;
    free(utf8);
    return found;
}

static inline int hcs_doc_field_is(PCWSTR doc, const char* key, const char* value)
{
    if (doc == NULL) {
        return 0;
    }
    char* utf8 = hcs_utf8(doc);
    if (utf8 == NULL) {
        return 0;
    }
    char quoted[128];
    snprintf(quoted, sizeof quoted, "\"%s\"", key);
    int found = 0;
    for (const char* p = strstr(utf8, quoted); p != NULL && !found; p = strstr(p + 1, quoted)) {
        const char* q = p + strlen(quoted);
        while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n') {
            q++;
        }
        if (*q++ != ':') {
            continue; /* the key text appeared as a value */
        }
        while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n') {
            q++;
        }
        found = strncmp(q, value, strlen(value)) == 0;
    }
    free(utf8);
    return found;
}

/* Writes "<prefix>-<pid>" (prefix in UTF-8) into buf as UTF-16 (n units) and returns buf. */
static inline WCHAR* hcs_sample_id(WCHAR* buf, size_t n, const char* prefix)
{
    char utf8[128];
    snprintf(utf8, sizeof utf8, "%s-%ld", prefix, (long)getpid());
    WCHAR* utf16 = hcs_utf16(utf8);
    size_t i = 0;
    for (; utf16 != NULL && utf16[i] != 0 && i + 1 < n; i++) {
        buf[i] = utf16[i];
    }
    buf[i] = 0;
    free(utf16);
    return buf;
}

#endif /* HCS_SAMPLES_COMMON_H */
