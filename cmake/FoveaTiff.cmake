# cmake/FoveaTiff.cmake: resolves FOVEA_TIFF (AUTO | ON | OFF) into FOVEA_TIFF_FOUND and, when found, the
# imported target fovea::tiff: libtiff (Debian/Ubuntu libtiff-dev, via CMake's FindTIFF). Linking
# fovea::tiff defines FOVEA_WITH_TIFF=1, which turns on fovea::data::load_tiff (include/fovea/data/tiff.hpp)
# and with it .tif / .tiff files in load_image.
include_guard(GLOBAL)

set(FOVEA_TIFF "AUTO" CACHE STRING "TIFF decoding with libtiff: AUTO (when libtiff is found), ON, OFF")
set_property(CACHE FOVEA_TIFF PROPERTY STRINGS AUTO ON OFF)
if(NOT FOVEA_TIFF MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "FOVEA_TIFF must be AUTO, ON or OFF (got '${FOVEA_TIFF}')")
endif()

set(FOVEA_TIFF_FOUND OFF)
if(NOT FOVEA_TIFF STREQUAL "OFF")
  find_package(TIFF QUIET)
  if(TIFF_FOUND AND TARGET TIFF::TIFF)
    set(FOVEA_TIFF_FOUND ON)
    if(NOT TARGET fovea::tiff)
      add_library(fovea::tiff INTERFACE IMPORTED)
      set_target_properties(fovea::tiff PROPERTIES INTERFACE_LINK_LIBRARIES TIFF::TIFF
                                                   INTERFACE_COMPILE_DEFINITIONS "FOVEA_WITH_TIFF=1")
    endif()
    message(STATUS "fovea: TIFF decoding on: libtiff ${TIFF_VERSION_STRING} (${TIFF_LIBRARIES})")
  elseif(FOVEA_TIFF STREQUAL "ON")
    message(FATAL_ERROR "fovea: FOVEA_TIFF=ON but libtiff was not found (Debian/Ubuntu: apt-get install "
                        "libtiff-dev)")
  else()
    message(STATUS "fovea: TIFF decoding off (FOVEA_TIFF=AUTO): libtiff not found (Debian/Ubuntu: apt-get "
                   "install libtiff-dev); load_tiff throws")
  endif()
endif()
