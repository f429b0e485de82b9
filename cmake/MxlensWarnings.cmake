# Warnings and sanitizer flags live on INTERFACE targets that each target links,
# not in global CMAKE_CXX_FLAGS.
add_library(mxlens_warnings INTERFACE)
target_compile_options(mxlens_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow=local -Wnon-virtual-dtor
    -Wno-unused-parameter>
  $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<BOOL:${MXLENS_WERROR}>>:-Werror>)

add_library(mxlens_options INTERFACE)
if(MXLENS_NATIVE)
  target_compile_options(mxlens_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-march=native>)
endif()
if(MXLENS_SANITIZE)
  target_compile_options(mxlens_options INTERFACE
    $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=address,undefined -fno-omit-frame-pointer
      -fno-sanitize-recover=undefined>)
  target_link_options(mxlens_options INTERFACE -fsanitize=address,undefined)
endif()
