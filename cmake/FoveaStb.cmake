# cmake/FoveaStb.cmake: resolves FOVEA_STB (AUTO | ON | OFF) into FOVEA_STB_FOUND and, when found, the
# imported target fovea::stb: stb_image / stb_image_write headers plus a compiled implementation
# (Debian/Ubuntu libstb-dev: /usr/include/stb/stb_image.h and libstb.so). Linking fovea::stb defines
# FOVEA_WITH_STB=1, which turns on fovea::data::load_image / write_png (include/fovea/data/image.hpp).
# Hints: FOVEA_STB_ROOT (CMake or environment variable).
include_guard(GLOBAL)

set(FOVEA_STB "AUTO" CACHE STRING "Image decoding with stb_image: AUTO (when libstb is found), ON, OFF")
set_property(CACHE FOVEA_STB PROPERTY STRINGS AUTO ON OFF)
if(NOT FOVEA_STB MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "FOVEA_STB must be AUTO, ON or OFF (got '${FOVEA_STB}')")
endif()

set(FOVEA_STB_FOUND OFF)
if(NOT FOVEA_STB STREQUAL "OFF")
  if(NOT DEFINED FOVEA_STB_ROOT AND DEFINED ENV{FOVEA_STB_ROOT})
    set(FOVEA_STB_ROOT "$ENV{FOVEA_STB_ROOT}")
  endif()
  find_path(FOVEA_STB_INCLUDE_DIR stb_image.h HINTS ${FOVEA_STB_ROOT} PATH_SUFFIXES stb include/stb include)
  find_library(FOVEA_STB_LIBRARY NAMES stb HINTS ${FOVEA_STB_ROOT}
               PATH_SUFFIXES lib lib64 ${CMAKE_LIBRARY_ARCHITECTURE})
  set(_fovea_stb_problem "")
  if(NOT FOVEA_STB_INCLUDE_DIR OR NOT FOVEA_STB_LIBRARY OR NOT EXISTS "${FOVEA_STB_INCLUDE_DIR}/stb_image_write.h")
    set(_fovea_stb_problem "stb_image.h, stb_image_write.h or libstb not found (Debian/Ubuntu: apt-get install "
                           "libstb-dev; or set FOVEA_STB_ROOT)")
  else()
    # The headers and the library must agree: link the decoder and the PNG encoder.
    include(CheckCXXSourceCompiles)
    set(CMAKE_REQUIRED_INCLUDES "${FOVEA_STB_INCLUDE_DIR}")
    set(CMAKE_REQUIRED_LIBRARIES "${FOVEA_STB_LIBRARY}")
    set(CMAKE_REQUIRED_QUIET ON)
    check_cxx_source_compiles([=[
      #include <stb_image.h>
      #include <stb_image_write.h>
      static void sink(void*, void*, int) {}
      int main() {
        unsigned char px[3] = {1, 2, 3};
        int w = 0, h = 0, c = 0;
        unsigned char* p = stbi_load_from_memory(px, 3, &w, &h, &c, 3);
        if (p) stbi_image_free(p);
        return stbi_write_png_to_func(sink, nullptr, 1, 1, 3, px, 3) && stbi_failure_reason() ? 0 : 1;
      }]=] FOVEA_STB_LINKS)
    unset(CMAKE_REQUIRED_INCLUDES)
    unset(CMAKE_REQUIRED_LIBRARIES)
    unset(CMAKE_REQUIRED_QUIET)
    if(NOT FOVEA_STB_LINKS)
      set(_fovea_stb_problem "a program calling stbi_load_from_memory and stbi_write_png_to_func does not link "
                             "against ${FOVEA_STB_LIBRARY} with ${FOVEA_STB_INCLUDE_DIR}/stb_image.h")
    endif()
  endif()

  if(_fovea_stb_problem STREQUAL "")
    set(FOVEA_STB_FOUND ON)
    if(NOT TARGET fovea::stb)
      add_library(fovea::stb UNKNOWN IMPORTED)
      set_target_properties(fovea::stb PROPERTIES IMPORTED_LOCATION "${FOVEA_STB_LIBRARY}"
                                                  INTERFACE_INCLUDE_DIRECTORIES "${FOVEA_STB_INCLUDE_DIR}"
                                                  INTERFACE_COMPILE_DEFINITIONS "FOVEA_WITH_STB=1")
    endif()
    message(STATUS "fovea: image I/O on: ${FOVEA_STB_LIBRARY} (stb_image.h in ${FOVEA_STB_INCLUDE_DIR})")
  elseif(FOVEA_STB STREQUAL "ON")
    message(FATAL_ERROR "fovea: FOVEA_STB=ON but ${_fovea_stb_problem}")
  else()
    message(STATUS "fovea: image I/O off (FOVEA_STB=AUTO): ${_fovea_stb_problem}; load_image and write_png "
                   "throw")
  endif()
endif()
