# Keep ggml's AMX path out of a native build unless SELFEXTEND_AMX is ON.
#
# ggml's x86 native build adds -march=native to the ggml-cpu target; appending
# -mno-amx-* after it (target options come later on the command line) turns the AMX
# ISA off again, so __AMX_INT8__ is undefined and ggml-cpu/amx/ compiles to nothing.
# Builds with GGML_NATIVE=OFF get AMX only from GGML_AMX_* (off by default) already.

include(CheckCXXCompilerFlag)

if (NOT SELFEXTEND_AMX AND GGML_NATIVE AND NOT MSVC AND TARGET ggml-cpu
        AND CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64|i[3-6]86)$")
    set(SELFEXTEND_NO_AMX_FLAGS "")
    foreach (feature amx-tile amx-int8 amx-bf16)
        string(MAKE_C_IDENTIFIER "SELFEXTEND_HAS_NO_${feature}" have_flag)
        check_cxx_compiler_flag("-mno-${feature}" ${have_flag})
        if (${have_flag})
            list(APPEND SELFEXTEND_NO_AMX_FLAGS "-mno-${feature}")
        endif()
    endforeach()
    # a compiler that knows none of these flags cannot emit AMX either
    if (SELFEXTEND_NO_AMX_FLAGS)
        target_compile_options(ggml-cpu PRIVATE ${SELFEXTEND_NO_AMX_FLAGS})
        message(STATUS "selfextend-gguf: AMX off (${SELFEXTEND_NO_AMX_FLAGS}); -DSELFEXTEND_AMX=ON to keep it")
    endif()
endif()
