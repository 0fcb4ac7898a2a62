// TSan builds only: tells ThreadSanitizer what absl::Mutex does, because Debian's abseil is not
// built with -fsanitize=thread. Without this TSan does not see the lock (an atomic and a futex
// inside the uninstrumented libabsl_synchronization.so) and reports every access guarded by an
// absl::Mutex, ours and gRPC's, as a race.
//
// This shared library is linked ahead of abseil into every TSan executable
// (cmake/Sanitizers.cmake), so the dynamic linker binds all callers -- our code, and gRPC, which
// locks absl::Mutex too -- to the definitions below. Each forwards to abseil's own function
// (dlsym RTLD_NEXT) inside the __tsan_mutex_* annotations that abseil itself compiles in when it
// is built with TSan (absl/synchronization/mutex.cc): lock = acquire, unlock = release, waiting =
// unlock + lock, and memory accesses inside the operation (waiters' Condition evaluated by
// whichever thread unlocks) ignored. Races between threads that hold no lock, or different
// locks, are still reported; no report is suppressed.
//
// The *WithTimeout variants are not wrapped: abseil implements them by calling the wrapped
// *WithDeadline ones through the PLT, so wrapping both would annotate twice.
#include <dlfcn.h>
#include <link.h>
#include <sanitizer/tsan_interface.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>

#include "absl/synchronization/mutex.h"

// TSan's dynamic annotations (tsan_interface_ann.cpp): ignore this thread's memory accesses.
extern "C" {
void AnnotateIgnoreReadsBegin(const char* file, int line);
void AnnotateIgnoreReadsEnd(const char* file, int line);
void AnnotateIgnoreWritesBegin(const char* file, int line);
void AnnotateIgnoreWritesEnd(const char* file, int line);
}

namespace {

#define TCPSCOPE_STRINGIFY2(x) #x
#define TCPSCOPE_STRINGIFY(x) TCPSCOPE_STRINGIFY2(x)

// abseil's function named by the Itanium mangling of absl::<inline namespace>::<suffix>.
void* Real(const char* suffix) {
  const char* ns = TCPSCOPE_STRINGIFY(ABSL_OPTION_INLINE_NAMESPACE_NAME);
  const std::string name = "_ZN4absl" + std::to_string(std::strlen(ns)) + ns + suffix;
  void* function = dlsym(RTLD_NEXT, name.c_str());
  if (function == nullptr) {
    std::fprintf(stderr, "tsan_absl_mutex: %s not found after this library: %s\n", name.c_str(),
                 dlerror());
    std::abort();
  }
  return function;
}

#define REAL(type, suffix) reinterpret_cast<type>(Real(suffix))

// The main executable's code: our code and every header-inline template (gRPC's included),
// all compiled with -fsanitize=thread. Everything else (libgrpc, libgpr, abseil) is not.
uintptr_t executable_begin = 0, executable_end = 0;

int FindExecutable(dl_phdr_info* info, size_t, void*) {
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& segment = info->dlpi_phdr[i];
    if (segment.p_type != PT_LOAD || !(segment.p_flags & PF_X)) continue;
    const uintptr_t begin = info->dlpi_addr + segment.p_vaddr;
    if (executable_begin == 0 || begin < executable_begin) executable_begin = begin;
    executable_end = std::max<uintptr_t>(executable_end, begin + segment.p_memsz);
  }
  return 1;  // the first object is the executable
}

// Locks taken by uninstrumented libraries (gRPC's own mutexes) still order our accesses, so
// their acquire and release are kept; but TSan would check the mutex word against the library's
// own, invisible, accesses to the object around it and report gRPC's internals. Those checks
// are skipped for them.
class ForeignCaller {
 public:
  explicit ForeignCaller(const void* return_address) {
    const auto pc = reinterpret_cast<uintptr_t>(return_address);
    foreign_ = pc < executable_begin || pc >= executable_end;
    if (foreign_) {
      AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
      AnnotateIgnoreWritesBegin(__FILE__, __LINE__);
    }
  }
  ~ForeignCaller() {
    if (foreign_) {
      AnnotateIgnoreWritesEnd(__FILE__, __LINE__);
      AnnotateIgnoreReadsEnd(__FILE__, __LINE__);
    }
  }

 private:
  bool foreign_;
};

#define CALLER ForeignCaller caller(__builtin_return_address(0))

// The mutexes this thread holds in reader mode, to annotate waits with the right mode.
constexpr int kMaxReaderLocks = 32;
thread_local const void* reader_locks[kMaxReaderLocks];
thread_local int reader_lock_count = 0;

void AddReader(const void* mu) {
  if (reader_lock_count == kMaxReaderLocks) {
    std::fprintf(stderr, "tsan_absl_mutex: more than %d reader locks held\n", kMaxReaderLocks);
    std::abort();
  }
  reader_locks[reader_lock_count++] = mu;
}

void RemoveReader(const void* mu) {
  for (int i = reader_lock_count - 1; i >= 0; --i) {
    if (reader_locks[i] == mu) {
      reader_locks[i] = reader_locks[--reader_lock_count];
      return;
    }
  }
}

unsigned HeldMode(const void* mu) {
  for (int i = 0; i < reader_lock_count; ++i) {
    if (reader_locks[i] == mu) return __tsan_mutex_read_lock;
  }
  return 0;
}

// Runs `call` between `before` and `after`, returning what `call` returns (or nothing).
template <typename Call, typename Before, typename After>
auto Between(Before before, Call call, After after) {
  before();
  if constexpr (std::is_void_v<decltype(call())>) {
    call();
    after();
  } else {
    auto result = call();
    after();
    return result;
  }
}

// A blocking lock operation (Lock, LockWhen, ...): always ends with the mutex held.
template <typename Call>
auto Locking(void* mu, unsigned mode, Call call) {
  return Between([&] { __tsan_mutex_pre_lock(mu, mode); }, call,
                 [&] {
                   __tsan_mutex_post_lock(mu, mode, 0);
                   if (mode & __tsan_mutex_read_lock) AddReader(mu);
                 });
}

// A try-lock: holds the mutex only when `call` returns true.
template <typename Call>
bool TryLocking(void* mu, unsigned mode, Call call) {
  __tsan_mutex_pre_lock(mu, mode | __tsan_mutex_try_lock);
  const bool locked = call();
  __tsan_mutex_post_lock(
      mu, mode | __tsan_mutex_try_lock | (locked ? 0 : __tsan_mutex_try_lock_failed), 0);
  if (locked && (mode & __tsan_mutex_read_lock)) AddReader(mu);
  return locked;
}

template <typename Call>
void Unlocking(void* mu, unsigned mode, Call call) {
  if (mode & __tsan_mutex_read_lock) RemoveReader(mu);
  Between([&] { __tsan_mutex_pre_unlock(mu, mode); }, call,
          [&] { __tsan_mutex_post_unlock(mu, mode); });
}

// Await and CondVar::Wait: the mutex is released while waiting and held again on return.
template <typename Call>
auto Waiting(void* mu, Call call) {
  const unsigned mode = HeldMode(mu);
  return Between([&] { __tsan_mutex_pre_unlock(mu, mode); }, call,
                 [&] {
                   __tsan_mutex_post_unlock(mu, mode);
                   __tsan_mutex_pre_lock(mu, mode);
                   __tsan_mutex_post_lock(mu, mode, 0);
                 });
}

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  static auto real = REAL(void (*)(Mutex*), "5Mutex4LockEv");
  CALLER;
  Locking(this, 0, [&] { real(this); });
}

void Mutex::ReaderLock() {
  static auto real = REAL(void (*)(Mutex*), "5Mutex10ReaderLockEv");
  CALLER;
  Locking(this, __tsan_mutex_read_lock, [&] { real(this); });
}

bool Mutex::TryLock() {
  static auto real = REAL(bool (*)(Mutex*), "5Mutex7TryLockEv");
  CALLER;
  return TryLocking(this, 0, [&] { return real(this); });
}

bool Mutex::ReaderTryLock() {
  static auto real = REAL(bool (*)(Mutex*), "5Mutex13ReaderTryLockEv");
  CALLER;
  return TryLocking(this, __tsan_mutex_read_lock, [&] { return real(this); });
}

void Mutex::Unlock() {
  static auto real = REAL(void (*)(Mutex*), "5Mutex6UnlockEv");
  CALLER;
  Unlocking(this, 0, [&] { real(this); });
}

void Mutex::ReaderUnlock() {
  static auto real = REAL(void (*)(Mutex*), "5Mutex12ReaderUnlockEv");
  CALLER;
  Unlocking(this, __tsan_mutex_read_lock, [&] { real(this); });
}

void Mutex::LockWhen(const Condition& cond) {
  static auto real = REAL(void (*)(Mutex*, const Condition&), "5Mutex8LockWhenERKNS0_9ConditionE");
  CALLER;
  Locking(this, 0, [&] { real(this, cond); });
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  static auto real =
      REAL(void (*)(Mutex*, const Condition&), "5Mutex14ReaderLockWhenERKNS0_9ConditionE");
  CALLER;
  Locking(this, __tsan_mutex_read_lock, [&] { real(this, cond); });
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, absl::Time deadline) {
  static auto real = REAL(bool (*)(Mutex*, const Condition&, absl::Time),
                          "5Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  CALLER;
  return Locking(this, 0, [&] { return real(this, cond, deadline); });
}

bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, absl::Time deadline) {
  static auto real = REAL(bool (*)(Mutex*, const Condition&, absl::Time),
                          "5Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  CALLER;
  return Locking(this, __tsan_mutex_read_lock, [&] { return real(this, cond, deadline); });
}

void Mutex::Await(const Condition& cond) {
  static auto real = REAL(void (*)(Mutex*, const Condition&), "5Mutex5AwaitERKNS0_9ConditionE");
  CALLER;
  Waiting(this, [&] { real(this, cond); });
}

bool Mutex::AwaitWithDeadline(const Condition& cond, absl::Time deadline) {
  static auto real = REAL(bool (*)(Mutex*, const Condition&, absl::Time),
                          "5Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  CALLER;
  return Waiting(this, [&] { return real(this, cond, deadline); });
}

Mutex::~Mutex() {
  static auto real = REAL(void (*)(Mutex*), "5MutexD1Ev");
  CALLER;
  __tsan_mutex_destroy(this, 0);
  real(this);
}

void CondVar::Wait(Mutex* mu) {
  static auto real = REAL(void (*)(CondVar*, Mutex*), "7CondVar4WaitEPNS0_5MutexE");
  CALLER;
  Waiting(mu, [&] { real(this, mu); });
}

bool CondVar::WaitWithDeadline(Mutex* mu, absl::Time deadline) {
  static auto real = REAL(bool (*)(CondVar*, Mutex*, absl::Time),
                          "7CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  CALLER;
  return Waiting(mu, [&] { return real(this, mu, deadline); });
}

ABSL_NAMESPACE_END
}  // namespace absl

namespace {

// Fails loudly when the dynamic linker did not put these definitions first (link order), rather
// than letting TSan report races that are not there.
__attribute__((constructor)) void CheckInterposed() {
  dl_iterate_phdr(FindExecutable, nullptr);
  const char* ns = TCPSCOPE_STRINGIFY(ABSL_OPTION_INLINE_NAMESPACE_NAME);
  const std::string name = "_ZN4absl" + std::to_string(std::strlen(ns)) + ns + "5Mutex4LockEv";
  Dl_info bound{};
  if (dladdr(dlsym(RTLD_DEFAULT, name.c_str()), &bound) == 0 ||
      std::strstr(bound.dli_fname, "tsan_absl") == nullptr) {
    std::fprintf(stderr, "tsan_absl_mutex: absl::Mutex::Lock binds to %s, not to this library\n",
                 bound.dli_fname != nullptr ? bound.dli_fname : "nothing");
    std::abort();
  }
}

}  // namespace
