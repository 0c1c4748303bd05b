# The instruction sets ggml's CPU backend is compiled for, written into the package as
# selfextend_gguf/_build_cpu.py.
#
# Under GGML_NATIVE (the default) ggml-cpu is compiled with -march=native: the build runs
# only on CPUs with every instruction set of the build machine. A wheel or a virtual
# environment moved to another CPU (a docker image, a venv on a cluster's shared disk)
# would die with an illegal instruction, inside the extension, with no message.
# selfextend_gguf/engine/cpu_check.py compares the list written here with the running CPU's
# flags before the extension is loaded and says what is missing and what to do instead.
#
# The list is the compiler's own answer: its predefined macros (__AVX2__, __AVX512F__,
# __ARM_FEATURE_DOTPROD, ...) under ggml-cpu's architecture flags, so it is right for
# native and explicit (GGML_AVX2=ON, ...) builds alike. Compilers that cannot print their
# macros (MSVC) write no list, and the check is skipped.

set(SELFEXTEND_CPU_MACROS "")
set(SELFEXTEND_CPU_FLAGS "")
if (TARGET ggml-cpu AND NOT MSVC)
    # the architecture options ggml-cpu compiles with (-m..., -D__ARM_FEATURE_...): the
    # toolchain's, then the target's own (its generator expressions are warnings and
    # language switches: none of them)
    separate_arguments(toolchain_options UNIX_COMMAND "${CMAKE_CXX_FLAGS} ${CMAKE_CXX_FLAGS_RELEASE}")
    get_target_property(target_options ggml-cpu COMPILE_OPTIONS)
    if (NOT target_options)
        set(target_options "")
    endif()
    set(cpu_flags "")
    foreach (option IN LISTS toolchain_options target_options)
        if (NOT option MATCHES "\\$<" AND option MATCHES "^-(m|D__|U__)")
            list(APPEND cpu_flags "${option}")
        endif()
    endforeach()
    set(empty_source "${CMAKE_CURRENT_BINARY_DIR}/cpu_requirements_probe.cpp")
    file(WRITE "${empty_source}" "")
    execute_process(
        COMMAND "${CMAKE_CXX_COMPILER}" ${cpu_flags} -dM -E "${empty_source}"
        RESULT_VARIABLE probe_rc
        OUTPUT_VARIABLE probe_macros
        ERROR_QUIET)
    if (probe_rc EQUAL 0)
        string(REGEX MATCHALL
            "#define (__x86_64__|__aarch64__|__(SSE[0-9_]*|SSSE3|AVX[A-Z0-9_]*|FMA|F16C|BMI2?|LZCNT|POPCNT|MOVBE|AMX_[A-Z0-9]+)__|__ARM_NEON|__ARM_FEATURE_[A-Z0-9_]+) "
            defines "${probe_macros}")
        foreach (define IN LISTS defines)
            string(REGEX REPLACE "^#define ([A-Za-z0-9_]+) $" "\\1" macro "${define}")
            list(APPEND SELFEXTEND_CPU_MACROS "${macro}")
        endforeach()
        list(REMOVE_DUPLICATES SELFEXTEND_CPU_MACROS)
        list(SORT SELFEXTEND_CPU_MACROS)
        string(REPLACE ";" " " SELFEXTEND_CPU_FLAGS "${cpu_flags}")
    else()
        message(STATUS "selfextend-gguf: the compiler did not list its macros: no CPU check at import")
    endif()
endif()

# A native build (-march=native, -mcpu=native) takes what the compiler finds in the build
# CPU; where the build machine's kernel does not name a flag of it (a kernel older than the
# CPU: no avx512_fp16 before Linux 5.11), the name cannot be checked anywhere, so the build
# machine's own flags are recorded too and cpu_check leaves such names out
set(SELFEXTEND_BUILD_CPU_FLAGS_PY "None")
if (SELFEXTEND_CPU_FLAGS MATCHES "-m(arch|cpu)=native" AND NOT CMAKE_CROSSCOMPILING AND EXISTS "/proc/cpuinfo")
    file(STRINGS "/proc/cpuinfo" build_cpu_lines REGEX "^(flags|Features)[ \t]*:" LIMIT_COUNT 1)
    if (build_cpu_lines)
        string(REGEX REPLACE "^[^:]*:[ \t]*" "" build_cpu_flags "${build_cpu_lines}")
        string(STRIP "${build_cpu_flags}" build_cpu_flags)
        set(SELFEXTEND_BUILD_CPU_FLAGS_PY "\"${build_cpu_flags}\"")
    endif()
endif()

if (SELFEXTEND_CPU_MACROS)
    list(JOIN SELFEXTEND_CPU_MACROS "\", \"" macros_joined)
    set(SELFEXTEND_CPU_MACROS_PY "(\"${macros_joined}\",)")
else()
    set(SELFEXTEND_CPU_MACROS_PY "None")
endif()
string(REPLACE "\"" "\\\"" SELFEXTEND_CPU_FLAGS_PY "${SELFEXTEND_CPU_FLAGS}")
file(WRITE "${CMAKE_CURRENT_BINARY_DIR}/_build_cpu.py"
"\"\"\"Written by the build (cmake/cpu_requirements.cmake): the compiler's instruction-set
macros under the flags ggml's CPU backend was compiled with (None when not known), and for a
native build the flags the build machine's /proc/cpuinfo names.\"\"\"

COMPILER_FLAGS = \"${SELFEXTEND_CPU_FLAGS_PY}\"
MACROS = ${SELFEXTEND_CPU_MACROS_PY}
BUILD_CPU_FLAGS = ${SELFEXTEND_BUILD_CPU_FLAGS_PY}
")
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/_build_cpu.py" DESTINATION selfextend_gguf)
message(STATUS "selfextend-gguf: CPU instruction sets required: ${SELFEXTEND_CPU_MACROS}")
