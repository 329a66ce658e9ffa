# cmake/FoveaCuda.cmake: resolves FOVEA_CUDA (AUTO | ON | OFF) into FOVEA_CUDA_ENABLED and, when on,
# the imported targets fovea::cudart, fovea::cublas and fovea::cudnn.
#
# cuDNN and cuBLAS are looked for next to the CUDA toolkit and under FOVEA_CUDNN_ROOT /
# FOVEA_CUBLAS_ROOT (CMake or environment variables), e.g. the site-packages/nvidia/cudnn folder of
# a pip-installed cuDNN, whose library may exist only as libcudnn.so.9.
include_guard(GLOBAL)

set(FOVEA_CUDA_ENABLED OFF)
set(_fovea_missing "")

if(NOT FOVEA_CUDA STREQUAL "OFF")
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "")
    set(CMAKE_CUDA_ARCHITECTURES 90 CACHE STRING "CUDA architectures to compile for (never native)")
  endif()
  if(CMAKE_CUDA_ARCHITECTURES MATCHES "native|all")
    message(FATAL_ERROR "fovea: CMAKE_CUDA_ARCHITECTURES=${CMAKE_CUDA_ARCHITECTURES} is not allowed "
                        "(build machines may have no GPU); name architectures, e.g. 90 or 80;90")
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(NOT CMAKE_CUDA_COMPILER)
    list(APPEND _fovea_missing "the CUDA compiler nvcc (put it on PATH or set CMAKE_CUDA_COMPILER)")
  else()
    find_package(CUDAToolkit QUIET)
    if(NOT CUDAToolkit_FOUND)
      list(APPEND _fovea_missing "the CUDA toolkit runtime (cudart) next to ${CMAKE_CUDA_COMPILER}")
    endif()
  endif()

  set(_fovea_cuda_hints "")
  if(CUDAToolkit_FOUND)
    list(APPEND _fovea_cuda_hints ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_LIBRARY_ROOT}
         ${CUDAToolkit_TARGET_DIR})
  endif()
  foreach(_lib IN ITEMS CUDNN CUBLAS)
    if(NOT DEFINED FOVEA_${_lib}_ROOT AND DEFINED ENV{FOVEA_${_lib}_ROOT})
      set(FOVEA_${_lib}_ROOT "$ENV{FOVEA_${_lib}_ROOT}")
    endif()
  endforeach()

  find_path(FOVEA_CUBLAS_INCLUDE_DIR cublas_v2.h
            HINTS ${FOVEA_CUBLAS_ROOT} ${CUDAToolkit_INCLUDE_DIRS} ${_fovea_cuda_hints}
            PATH_SUFFIXES include)
  find_library(FOVEA_CUBLAS_LIBRARY NAMES cublas libcublas.so.13 libcublas.so.12
               HINTS ${FOVEA_CUBLAS_ROOT} ${_fovea_cuda_hints} PATH_SUFFIXES lib lib64)
  find_library(FOVEA_CUBLASLT_LIBRARY NAMES cublasLt libcublasLt.so.13 libcublasLt.so.12
               HINTS ${FOVEA_CUBLAS_ROOT} ${_fovea_cuda_hints} PATH_SUFFIXES lib lib64)
  find_path(FOVEA_CUDNN_INCLUDE_DIR cudnn.h
            HINTS ${FOVEA_CUDNN_ROOT} ${CUDAToolkit_INCLUDE_DIRS} ${_fovea_cuda_hints}
            PATH_SUFFIXES include)
  find_library(FOVEA_CUDNN_LIBRARY NAMES cudnn libcudnn.so.9
               HINTS ${FOVEA_CUDNN_ROOT} ${_fovea_cuda_hints} PATH_SUFFIXES lib lib64)
  if(NOT FOVEA_CUBLAS_INCLUDE_DIR OR NOT FOVEA_CUBLAS_LIBRARY OR NOT FOVEA_CUBLASLT_LIBRARY)
    list(APPEND _fovea_missing "cuBLAS (cublas_v2.h, libcublas, libcublasLt; set FOVEA_CUBLAS_ROOT)")
  endif()
  if(NOT FOVEA_CUDNN_INCLUDE_DIR OR NOT FOVEA_CUDNN_LIBRARY)
    list(APPEND _fovea_missing "cuDNN 9 (cudnn.h, libcudnn; set FOVEA_CUDNN_ROOT)")
  endif()

  if(_fovea_missing STREQUAL "")
    set(FOVEA_CUDA_ENABLED ON)
  elseif(FOVEA_CUDA STREQUAL "ON")
    list(JOIN _fovea_missing "\n  - " _fovea_list)
    message(FATAL_ERROR "fovea: FOVEA_CUDA=ON but these are missing:\n  - ${_fovea_list}\n"
                        "Install them, point the hints at them, or configure with -DFOVEA_CUDA=OFF.")
  else()
    list(JOIN _fovea_missing "; " _fovea_list)
    message(STATUS "fovea: CUDA backend off (FOVEA_CUDA=AUTO): missing ${_fovea_list}")
  endif()
endif()

# A cache entry, so a parent project that add_subdirectory()s fovea sees it (fovea_add_kernels).
set(FOVEA_CUDA_ENABLED ${FOVEA_CUDA_ENABLED} CACHE INTERNAL "fovea: the CUDA backend is on")
if(FOVEA_CUDA_ENABLED)
  enable_language(CUDA)
  if(NOT TARGET fovea::cudnn)
    add_library(fovea::cudnn UNKNOWN IMPORTED)
    set_target_properties(fovea::cudnn PROPERTIES IMPORTED_LOCATION "${FOVEA_CUDNN_LIBRARY}"
                                                  INTERFACE_INCLUDE_DIRECTORIES "${FOVEA_CUDNN_INCLUDE_DIR}")
    add_library(fovea::cublas UNKNOWN IMPORTED)
    set_target_properties(fovea::cublas PROPERTIES IMPORTED_LOCATION "${FOVEA_CUBLAS_LIBRARY}"
                                                   INTERFACE_INCLUDE_DIRECTORIES "${FOVEA_CUBLAS_INCLUDE_DIR}")
    add_library(fovea::cublasLt UNKNOWN IMPORTED)
    set_target_properties(fovea::cublasLt PROPERTIES IMPORTED_LOCATION "${FOVEA_CUBLASLT_LIBRARY}")
  endif()
  message(STATUS "fovea: CUDA backend on: nvcc ${CMAKE_CUDA_COMPILER_VERSION}, architectures "
                 "${CMAKE_CUDA_ARCHITECTURES}, cuDNN ${FOVEA_CUDNN_LIBRARY}, cuBLAS ${FOVEA_CUBLAS_LIBRARY}")
endif()

# fovea_add_kernels(<target>): compiles fovea's CUDA kernels (kernels/fovea_kernels.cu) into
# <target>, once. Every program that uses fovea::fovea in a CUDA build needs this exactly once
# (or links a library that did it).
function(fovea_add_kernels target)
  if(NOT FOVEA_CUDA_ENABLED)
    message(FATAL_ERROR "fovea_add_kernels(${target}): fovea was configured without CUDA")
  endif()
  target_sources(${target} PRIVATE "${FOVEA_KERNELS_DIR}/fovea_kernels.cu")
  target_link_libraries(${target} PUBLIC fovea::fovea)
endfunction()
