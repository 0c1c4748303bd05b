# A Vulkan build compiles ggml-vulkan's shaders with glslc: a few thousand compiles,
# most of the build's time, which ccache does not cache. With SELFEXTEND_SHADER_CACHE
# (on by default) ggml-vulkan calls glslc through cmake/glslc_cache.py, which keeps each
# compiled shader under the cache root (SELFEXTEND_GGUF_CACHE, else ~/.cache/selfextend-gguf)
# in shaders/ and copies it from there when the same compile comes again: a rebuild in
# a new build directory or a fresh clone takes minutes instead of half an hour.
option(SELFEXTEND_SHADER_CACHE "Cache ggml-vulkan's compiled shaders between builds" ON)

if (GGML_VULKAN AND SELFEXTEND_SHADER_CACHE AND UNIX)
    find_program(SELFEXTEND_GLSLC NAMES glslc HINTS "$ENV{VULKAN_SDK}/bin")
    if (NOT SELFEXTEND_GLSLC)
        message(FATAL_ERROR "selfextend-gguf: a Vulkan build needs glslc, the shader compiler "
            "(Debian/Ubuntu: apt-get install glslc libvulkan-dev spirv-headers, or scripts/setup_vulkan.sh; "
            "elsewhere the Vulkan SDK)")
    endif()
    if (DEFINED ENV{SELFEXTEND_GGUF_CACHE} AND NOT "$ENV{SELFEXTEND_GGUF_CACHE}" STREQUAL "")
        set(_se_shader_cache "$ENV{SELFEXTEND_GGUF_CACHE}/shaders")
    elseif (DEFINED ENV{XDG_CACHE_HOME} AND NOT "$ENV{XDG_CACHE_HOME}" STREQUAL "")
        set(_se_shader_cache "$ENV{XDG_CACHE_HOME}/selfextend-gguf/shaders")
    else()
        set(_se_shader_cache "$ENV{HOME}/.cache/selfextend-gguf/shaders")
    endif()
    set(_se_wrapper "${CMAKE_BINARY_DIR}/glslc-cached")
    file(WRITE "${_se_wrapper}.in"
        "#!/bin/sh\nexec \"${Python_EXECUTABLE}\" \"${CMAKE_CURRENT_SOURCE_DIR}/cmake/glslc_cache.py\" "
        "\"${_se_shader_cache}\" \"${SELFEXTEND_GLSLC}\" \"$@\"\n")
    file(COPY_FILE "${_se_wrapper}.in" "${_se_wrapper}" ONLY_IF_DIFFERENT)
    file(CHMOD "${_se_wrapper}" PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
        WORLD_READ WORLD_EXECUTE)
    # FindVulkan (called by ggml-vulkan) takes a glslc already named in the cache
    set(Vulkan_GLSLC_EXECUTABLE "${_se_wrapper}" CACHE FILEPATH "glslc, through selfextend-gguf's shader cache" FORCE)
    message(STATUS "selfextend-gguf: Vulkan shaders cached in ${_se_shader_cache}")
endif()
