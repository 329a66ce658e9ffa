# cmake/FoveaBlas.cmake: resolves FOVEA_BLAS (AUTO | ON | OFF) into FOVEA_BLAS_FOUND and, when found,
# the imported target fovea::blas (a CBLAS library, preferably OpenBLAS, with its cblas.h).
#
# cpu::gemm (include/fovea/cpu/gemm.hpp) calls cblas_sgemm when FOVEA_WITH_BLAS is defined and a
# blocked C++ loop otherwise. Hints: FOVEA_BLAS_ROOT (CMake or environment variable).
include_guard(GLOBAL)

set(FOVEA_BLAS "AUTO" CACHE STRING "CPU BLAS for cpu::gemm: AUTO (when OpenBLAS/CBLAS is found), ON, OFF")
set_property(CACHE FOVEA_BLAS PROPERTY STRINGS AUTO ON OFF)
if(NOT FOVEA_BLAS MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "FOVEA_BLAS must be AUTO, ON or OFF (got '${FOVEA_BLAS}')")
endif()

set(FOVEA_BLAS_FOUND OFF)
if(NOT FOVEA_BLAS STREQUAL "OFF")
  if(NOT DEFINED FOVEA_BLAS_ROOT AND DEFINED ENV{FOVEA_BLAS_ROOT})
    set(FOVEA_BLAS_ROOT "$ENV{FOVEA_BLAS_ROOT}")
  endif()
  # Debian/Ubuntu (libopenblas-dev): /usr/include/x86_64-linux-gnu/cblas.h and libopenblas.so.
  find_path(FOVEA_CBLAS_INCLUDE_DIR cblas.h
            HINTS ${FOVEA_BLAS_ROOT}
            PATH_SUFFIXES include include/openblas openblas ${CMAKE_LIBRARY_ARCHITECTURE}
                          include/${CMAKE_LIBRARY_ARCHITECTURE})
  find_library(FOVEA_BLAS_LIBRARY NAMES openblas openblasp blas
               HINTS ${FOVEA_BLAS_ROOT} PATH_SUFFIXES lib lib64 ${CMAKE_LIBRARY_ARCHITECTURE})
  set(_fovea_blas_problem "")
  if(NOT FOVEA_CBLAS_INCLUDE_DIR OR NOT FOVEA_BLAS_LIBRARY)
    set(_fovea_blas_problem "cblas.h or libopenblas not found (Debian/Ubuntu: apt-get install libopenblas-dev; "
                            "or set FOVEA_BLAS_ROOT)")
  else()
    # The header and the library must agree: link a call to cblas_sgemm.
    include(CheckCXXSourceCompiles)
    set(CMAKE_REQUIRED_INCLUDES "${FOVEA_CBLAS_INCLUDE_DIR}")
    set(CMAKE_REQUIRED_LIBRARIES "${FOVEA_BLAS_LIBRARY}")
    set(CMAKE_REQUIRED_QUIET ON)
    check_cxx_source_compiles([=[
      #include <cblas.h>
      int main() {
        float a = 1, b = 2, c = 0;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1, 1, 1, 1.0f, &a, 1, &b, 1, 0.0f, &c, 1);
        return c == 2.0f ? 0 : 1;
      }]=] FOVEA_CBLAS_LINKS)
    unset(CMAKE_REQUIRED_INCLUDES)
    unset(CMAKE_REQUIRED_LIBRARIES)
    unset(CMAKE_REQUIRED_QUIET)
    if(NOT FOVEA_CBLAS_LINKS)
      set(_fovea_blas_problem "a program calling cblas_sgemm does not link against ${FOVEA_BLAS_LIBRARY} "
                              "with ${FOVEA_CBLAS_INCLUDE_DIR}/cblas.h")
    endif()
  endif()

  if(_fovea_blas_problem STREQUAL "")
    set(FOVEA_BLAS_FOUND ON)
    if(NOT TARGET fovea::blas)
      add_library(fovea::blas UNKNOWN IMPORTED)
      set_target_properties(fovea::blas PROPERTIES IMPORTED_LOCATION "${FOVEA_BLAS_LIBRARY}"
                                                   INTERFACE_INCLUDE_DIRECTORIES "${FOVEA_CBLAS_INCLUDE_DIR}")
    endif()
    message(STATUS "fovea: CPU BLAS on: ${FOVEA_BLAS_LIBRARY} (cblas.h in ${FOVEA_CBLAS_INCLUDE_DIR})")
  elseif(FOVEA_BLAS STREQUAL "ON")
    message(FATAL_ERROR "fovea: FOVEA_BLAS=ON but ${_fovea_blas_problem}")
  else()
    message(STATUS "fovea: CPU BLAS off (FOVEA_BLAS=AUTO): ${_fovea_blas_problem}; cpu::gemm uses its "
                   "blocked loop")
  endif()
endif()
