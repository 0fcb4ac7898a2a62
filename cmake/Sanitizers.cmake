# Sanitizer and fuzzing builds, chosen at configure time:
#   -DTCPSCOPE_SANITIZE=address   ASan + UBSan (every UB report is fatal)
#   -DTCPSCOPE_SANITIZE=thread    TSan
#   -DTCPSCOPE_FUZZ=ON            the libFuzzer targets of tests/fuzz (clang; implies address)
# The flags go to every C/C++ target of this project. The eBPF program is compiled by its own
# custom command (agent/bpf/CMakeLists.txt), which sees none of them.
set(TCPSCOPE_SANITIZE "" CACHE STRING "Sanitizer build: empty, address (ASan+UBSan) or thread (TSan)")
set_property(CACHE TCPSCOPE_SANITIZE PROPERTY STRINGS "" address thread)
option(TCPSCOPE_FUZZ "Build the libFuzzer targets of tests/fuzz (clang only)" OFF)

if(TCPSCOPE_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "TCPSCOPE_FUZZ needs clang (-fsanitize=fuzzer); configure with "
                        "-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++")
  endif()
  if(TCPSCOPE_SANITIZE STREQUAL "")
    set(TCPSCOPE_SANITIZE address CACHE STRING "" FORCE)
  elseif(NOT TCPSCOPE_SANITIZE STREQUAL "address")
    message(FATAL_ERROR "TCPSCOPE_FUZZ runs under ASan+UBSan; it cannot be combined with "
                        "TCPSCOPE_SANITIZE=${TCPSCOPE_SANITIZE}")
  endif()
  # Coverage feedback for libFuzzer in every library the targets link; only the fuzz targets
  # themselves link libFuzzer's main (-fsanitize=fuzzer, tests/fuzz/CMakeLists.txt).
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()

if(TCPSCOPE_SANITIZE STREQUAL "address")
  set(tcpscope_sanitizer_flags -fsanitize=address,undefined -fno-sanitize-recover=all)
elseif(TCPSCOPE_SANITIZE STREQUAL "thread")
  set(tcpscope_sanitizer_flags -fsanitize=thread)
elseif(NOT TCPSCOPE_SANITIZE STREQUAL "")
  message(FATAL_ERROR "TCPSCOPE_SANITIZE must be empty, address or thread, not '${TCPSCOPE_SANITIZE}'")
endif()

if(tcpscope_sanitizer_flags)
  add_compile_options(${tcpscope_sanitizer_flags} -fno-omit-frame-pointer)
  add_link_options(${tcpscope_sanitizer_flags})
  message(STATUS "tcpscope: sanitizer build (${TCPSCOPE_SANITIZE}): ${tcpscope_sanitizer_flags}")
endif()

if(TCPSCOPE_SANITIZE STREQUAL "thread")
  # Debian's abseil is not TSan-instrumented: this library, linked first into every target
  # created below, shows TSan what absl::Mutex does (tests/sanitizers/tsan_absl_mutex.cc).
  add_library(tcpscope_tsan_absl_mutex SHARED tests/sanitizers/tsan_absl_mutex.cc)
  target_link_libraries(tcpscope_tsan_absl_mutex PRIVATE absl::synchronization ${CMAKE_DL_LIBS})
  link_libraries(tcpscope_tsan_absl_mutex)
endif()
