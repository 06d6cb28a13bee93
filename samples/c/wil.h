/*
 * wil.h: a small C++17 stand-in for the parts of Microsoft's Windows Implementation
 * Libraries (WIL, github.com/microsoft/wil) that the HCS samples use (HCS-API section 8),
 * so that the samples compile on Linux against computecore.h nearly unchanged.
 *
 * What it stands in for:
 *   wil::unique_any<T, decltype(&Close), Close>   RAII owner of a handle: get(), put(), &x
 *                                                 (frees the old value and returns its
 *                                                 address, as WIL's operator& does), reset(),
 *                                                 release(), explicit bool.
 *   unique_hcs_operation / unique_hcs_system /    unique_any over HcsCloseOperation /
 *   unique_hcs_process                            HcsCloseComputeSystem / HcsCloseProcess,
 *                                                 exactly as the samples declare them.
 *   wil::unique_hlocal_string                     a PWSTR freed with LocalFree (exported by
 *                                                 libcomputecore.so for result documents).
 *   wil::unique_event                             a Win32 auto-reset event: create(), get(),
 *                                                 SetEvent(), ResetEvent(), wait(timeoutMs);
 *                                                 here a std::mutex + std::condition_variable.
 *   SetEvent(void*)                               the Win32 function, on get()'s pointer: the
 *                                                 samples pass that pointer as the HCS
 *                                                 callback context and signal it from there.
 *   THROW_IF_FAILED(hr)                           WIL throws; we print file:line, the call,
 *   THROW_IF_FAILED_MSG(hr, fmt, ...)             the HRESULT in hex and its name (plus the
 *   THROW_HR_IF(hr, cond)                         message) and _Exit(1) at once, also from a
 *   WI_ASSERT(cond)                               callback thread. WIL's WI_ASSERT checks only
 *                                                 in debug builds; ours always checks.
 *   to_utf8(PCWSTR)                               (not WIL) UTF-16 -> UTF-8 std::string: the
 *                                                 samples print documents with "%ws", which
 *                                                 Linux printf lacks; write "%s", to_utf8(doc).
 *
 * HRESULT names and the UTF-16 conversion come from common.h.
 *
 * Differences worth knowing: unique_event::create() on an existing event resets it rather
 * than making a new one, so a pointer already handed to a callback stays valid.
 */
#ifndef HCS_SAMPLES_WIL_H
#define HCS_SAMPLES_WIL_H

#include <computecore.h>

#include "common.h"

#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

// UTF-16 -> UTF-8 for printing (NULL gives "(null)").
inline std::string to_utf8(PCWSTR s)
{
    char* utf8 = hcs_utf8(s);
    std::string out = utf8 != nullptr ? utf8 : "(out of memory)";
    std::free(utf8);
    return out;
}

namespace wil {

template <typename Pointer, typename CloseFn, CloseFn Close>
class unique_any {
public:
    unique_any() = default;
    explicit unique_any(Pointer value) : m_value(value) {}
    unique_any(const unique_any&) = delete;
    unique_any& operator=(const unique_any&) = delete;
    unique_any(unique_any&& other) noexcept : m_value(other.release()) {}
    unique_any& operator=(unique_any&& other) noexcept
    {
        if (this != std::addressof(other)) { // & is overloaded (put) below
            reset(other.release());
        }
        return *this;
    }
    ~unique_any() { reset(); }

    Pointer get() const { return m_value; }
    explicit operator bool() const { return m_value != Pointer{}; }

    // Closes the current value (if any) and takes ownership of value.
    void reset(Pointer value = Pointer{})
    {
        Pointer old = std::exchange(m_value, value);
        if (old != Pointer{}) {
            Close(old);
        }
    }
    Pointer release() { return std::exchange(m_value, Pointer{}); }

    // For out-parameters: frees the current value, then hands out its address.
    Pointer* put()
    {
        reset();
        return &m_value;
    }
    Pointer* operator&() { return put(); }

private:
    Pointer m_value{};
};

using unique_hlocal_string = unique_any<PWSTR, decltype(&::LocalFree), ::LocalFree>;

namespace details {
struct event_state {
    std::mutex lock;
    std::condition_variable signalled_cv;
    bool signalled = false;
};
} // namespace details

// An auto-reset event: wait() returns true once per SetEvent and clears the signal.
class unique_event {
public:
    void create()
    {
        if (!m_state) {
            m_state = std::make_unique<details::event_state>();
        } else {
            ResetEvent();
        }
    }
    void* get() const { return m_state.get(); }
    void SetEvent() const;
    void ResetEvent() const
    {
        std::lock_guard<std::mutex> guard(m_state->lock);
        m_state->signalled = false;
    }
    // timeoutMs = INFINITE waits without limit; returns false on timeout.
    bool wait(DWORD timeoutMs = INFINITE) const
    {
        std::unique_lock<std::mutex> guard(m_state->lock);
        auto signalled = [this] { return m_state->signalled; };
        if (timeoutMs == INFINITE) {
            m_state->signalled_cv.wait(guard, signalled);
        } else if (!m_state->signalled_cv.wait_for(guard, std::chrono::milliseconds(timeoutMs), signalled)) {
            return false;
        }
        m_state->signalled = false;
        return true;
    }

private:
    std::unique_ptr<details::event_state> m_state;
};

namespace details {
[[noreturn]] inline void fail_report(const char* file, int line, const char* what, HRESULT hr)
{
    std::fflush(stdout);
    std::fprintf(stderr, "%s:%d: FAILED: %s\n", file, line, what);
    std::fprintf(stderr, "    HRESULT 0x%08X (%s)\n", static_cast<unsigned>(hr), hcs_hresult_name(hr));
    std::fflush(stderr);
    // Not exit(): a callback thread may fail while the library runs; end the process now.
    std::_Exit(1);
}

[[noreturn]] inline void fail_message(const char* file, int line, const char* what, HRESULT hr,
                                      const char* format, ...) __attribute__((format(printf, 5, 6)));

[[noreturn]] inline void fail_message(const char* file, int line, const char* what, HRESULT hr,
                                      const char* format, ...)
{
    std::fflush(stdout);
    std::va_list args;
    va_start(args, format);
    std::fprintf(stderr, "%s:%d: message: ", file, line);
    std::vfprintf(stderr, format, args);
    std::fprintf(stderr, "\n");
    va_end(args);
    fail_report(file, line, what, hr);
}
} // namespace details

} // namespace wil

// Win32 SetEvent on the pointer of wil::unique_event::get() (the HCS callback context).
inline BOOL SetEvent(void* event)
{
    auto* state = static_cast<wil::details::event_state*>(event);
    std::lock_guard<std::mutex> guard(state->lock);
    state->signalled = true;
    // Notified under the lock: the waiter cannot return and destroy the event before this.
    state->signalled_cv.notify_all();
    return TRUE;
}

inline void wil::unique_event::SetEvent() const { ::SetEvent(get()); }

// The RAII handle types of the HCS samples (OperationCompletionSample.md, Tutorial.md).
using unique_hcs_operation = wil::unique_any<HCS_OPERATION, decltype(&HcsCloseOperation), HcsCloseOperation>;
using unique_hcs_system = wil::unique_any<HCS_SYSTEM, decltype(&HcsCloseComputeSystem), HcsCloseComputeSystem>;
using unique_hcs_process = wil::unique_any<HCS_PROCESS, decltype(&HcsCloseProcess), HcsCloseProcess>;

#define THROW_IF_FAILED(hr)                                                      \
    do {                                                                         \
        const HRESULT wil_hr_ = (hr);                                            \
        if (FAILED(wil_hr_)) {                                                   \
            ::wil::details::fail_report(__FILE__, __LINE__, #hr, wil_hr_);       \
        }                                                                        \
    } while (0)

// The message arguments are evaluated only after hr, so "&resultDoc" in hr is already set.
#define THROW_IF_FAILED_MSG(hr, ...)                                                    \
    do {                                                                                \
        const HRESULT wil_hr_ = (hr);                                                   \
        if (FAILED(wil_hr_)) {                                                          \
            ::wil::details::fail_message(__FILE__, __LINE__, #hr, wil_hr_, __VA_ARGS__); \
        }                                                                               \
    } while (0)

#define THROW_HR_IF(hr, condition)                                               \
    do {                                                                         \
        if (condition) {                                                         \
            ::wil::details::fail_report(__FILE__, __LINE__, #condition, (hr));   \
        }                                                                        \
    } while (0)

#define WI_ASSERT(condition)                                                                        \
    do {                                                                                            \
        if (!(condition)) {                                                                         \
            ::wil::details::fail_report(__FILE__, __LINE__, "WI_ASSERT(" #condition ")", E_UNEXPECTED); \
        }                                                                                           \
    } while (0)

#endif /* HCS_SAMPLES_WIL_H */
