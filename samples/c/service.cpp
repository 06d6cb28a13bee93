// service.cpp: Microsoft's ServiceSample.md (HCS-API 3.5, 7.9, 8.3; rule 43) ported to Linux
// with wil.h: the host service functions, all synchronous, each documented result checked.
//
//   HcsGetServiceProperties({"PropertyTypes":["Memory"]})   HCS_E_INVALID_JSON with a ResultError: the
//     (the sample's query, unchanged)                       sample's bug, "Memory" is no GetPropertyType
//   HcsGetServiceProperties({"PropertyTypes":["Basic"]})    S_OK, Properties[0].SupportedSchemaVersions
//                                                           holds Major 2 (rule 43)
//   HcsGetServiceProperties(["ProcessorTopology"])          S_OK, LogicalProcessorCount >= 1
//   HcsModifyServiceSettings(<the sample's CpuGroup         HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED) with a
//     CreateGroup request>, &resultDoc)                     result document, printed as the sample does
//   HcsSubmitWerReport(<a CrashReport>)                     S_OK (recorded in the host's log)
//   HcsSubmitWerReport(<malformed JSON>)                    HCS_E_INVALID_JSON
//
// The sample's third snippet forwards HcsEventSystemCrashReport to HcsSubmitWerReport from a
// system callback; without a crashing guest the program submits a CrashReport of the same
// shape directly. Exits 0 only if every documented result held.

#include <computecore.h>

#include "wil.h"

#include <cstdio>
#include <cstdlib>
#include <string>

// The sample's query (ServiceSample.md, "Get the properties of host service").
static constexpr WCHAR c_ServicePropertyQuery[] = uR"(
    {
        "PropertyTypes":[
            "Memory"
        ]
    })";

static constexpr WCHAR c_BasicQuery[] = uR"({"PropertyTypes":["Basic"]})";
static constexpr WCHAR c_TopologyQuery[] = uR"({"PropertyTypes":["ProcessorTopology"]})";

// The sample's settings (ServiceSample.md, "Modify the service settings"; HCS-API 8.3).
static constexpr WCHAR c_ServiceSettings[] = uR"(
    {
        "PropertyType": "CpuGroup",
        "Settings": {
            "Operation": "CreateGroup",
            "OperationDetails": {
                "GroupId": "GUID",
                "LogicalProcessorCount": 2,
                "LogicalProcessors": [0, 1]
            }
        }
    })";

// A CrashReport as HcsEventSystemCrashReport delivers it (HCS-API 7.10).
static constexpr WCHAR c_CrashReport[] = uR"({"SystemId":"x","CrashParameters":[1,2,3,4,5]})";
static constexpr WCHAR c_MalformedReport[] = uR"({"SystemId":"x","CrashParameters":[1,2,3)";

static const HRESULT c_NotSupported = HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED);

// Prints "  <step> -> 0x... (NAME)" and returns hr.
static HRESULT report(const char* step, HRESULT hr)
{
    std::printf("  %s -> 0x%08X (%s)\n", step, static_cast<unsigned>(hr), hcs_hresult_name(hr));
    return hr;
}

// The integer value of the first member "key" of a JSON document (-1 if absent).
static long long number_member(PCWSTR doc, const char* key)
{
    const std::string text = to_utf8(doc);
    const size_t at = text.find(std::string("\"") + key + "\"");
    if (at == std::string::npos) {
        return -1;
    }
    const size_t colon = text.find(':', at);
    if (colon == std::string::npos) {
        return -1;
    }
    char* end = nullptr;
    const long long value = std::strtoll(text.c_str() + colon + 1, &end, 10);
    return end == text.c_str() + colon + 1 ? -1 : value;
}

int main()
{
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    std::printf("service: ServiceSample.md\n");

    //
    // Get the properties of host service: the sample's query.
    //
    std::printf("get the properties of host service\n");
    {
        wil::unique_hlocal_string resultDoc;
        // The sample: THROW_IF_FAILED(HcsGetServiceProperties(c_ServicePropertyQuery, &resultDoc)).
        // "Memory" is not a GetPropertyType (HCS-API 7.9): the query is refused.
        THROW_HR_IF(E_UNEXPECTED, report("HcsGetServiceProperties({\"PropertyTypes\":[\"Memory\"]})",
                                         HcsGetServiceProperties(c_ServicePropertyQuery, &resultDoc))
                                      != HCS_E_INVALID_JSON);
        std::printf("    error document: %s\n", to_utf8(resultDoc.get()).c_str());
        THROW_HR_IF(E_UNEXPECTED, !resultDoc);
        THROW_HR_IF(E_UNEXPECTED, !hcs_doc_field_is(resultDoc.get(), "Error", "-2143878899"));
        THROW_HR_IF(E_UNEXPECTED, !hcs_doc_contains(resultDoc.get(), "\"ErrorMessage\""));

        // What the sample means to show, with valid property types.
        THROW_HR_IF(E_UNEXPECTED, report("HcsGetServiceProperties({\"PropertyTypes\":[\"Basic\"]})",
                                         HcsGetServiceProperties(c_BasicQuery, &resultDoc))
                                      != S_OK);
        std::printf("    Service property is %s\n", to_utf8(resultDoc.get()).c_str());
        // Rule 43: {"Properties":[{"SupportedSchemaVersions":[{"Major":2,...}]}]}.
        THROW_HR_IF(E_UNEXPECTED, !hcs_doc_contains(resultDoc.get(), "\"Properties\""));
        THROW_HR_IF(E_UNEXPECTED, !hcs_doc_contains(resultDoc.get(), "\"SupportedSchemaVersions\""));
        THROW_HR_IF(E_UNEXPECTED, !hcs_doc_field_is(resultDoc.get(), "Major", "2"));
        std::printf("    SupportedSchemaVersions holds Major 2\n");

        THROW_HR_IF(E_UNEXPECTED, report("HcsGetServiceProperties({\"PropertyTypes\":[\"ProcessorTopology\"]})",
                                         HcsGetServiceProperties(c_TopologyQuery, &resultDoc))
                                      != S_OK);
        const long long count = number_member(resultDoc.get(), "LogicalProcessorCount");
        std::printf("    LogicalProcessorCount %lld\n", count);
        THROW_HR_IF(E_UNEXPECTED, !hcs_doc_contains(resultDoc.get(), "\"Properties\""));
        THROW_HR_IF(E_UNEXPECTED, count < 1);
    }

    //
    // Modify the service settings
    //
    std::printf("modify the service settings (CpuGroup CreateGroup)\n");
    {
        wil::unique_hlocal_string resultDoc;
        HRESULT hr = HcsModifyServiceSettings(c_ServiceSettings, &resultDoc);
        report("HcsModifyServiceSettings", hr);
        if (FAILED(hr))
        {
            std::printf("    %s\n", to_utf8(resultDoc.get()).c_str());
        }
        // The sample: THROW_IF_FAILED(hr). No CPU groups on this host: ERROR_NOT_SUPPORTED.
        THROW_HR_IF(E_UNEXPECTED, hr != c_NotSupported);
        THROW_HR_IF(E_UNEXPECTED, !resultDoc);
        THROW_HR_IF(E_UNEXPECTED, !hcs_doc_field_is(resultDoc.get(), "Error", "-2147024846"));
    }

    //
    // Submit Crash Report (what the sample's callback does with HcsEventSystemCrashReport).
    //
    std::printf("submit crash report\n");
    THROW_HR_IF(E_UNEXPECTED, report("HcsSubmitWerReport({\"SystemId\":\"x\",\"CrashParameters\":[1,2,3,4,5]})",
                                     HcsSubmitWerReport(c_CrashReport))
                                  != S_OK);
    THROW_HR_IF(E_UNEXPECTED, report("HcsSubmitWerReport(<malformed JSON>)", HcsSubmitWerReport(c_MalformedReport))
                                  != HCS_E_INVALID_JSON);

    std::printf("service: PASS\n");
    return 0;
}
