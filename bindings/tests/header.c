/* octclassify.h compiles as strict C89 (CMakeLists.txt: -std=c89 -pedantic-errors -Werror). */
#include "octclassify.h"

octc_status header_c89(octc_result *result, octc_options *options);

octc_status header_c89(octc_result *result, octc_options *options)
{
    octc_options_init(options);
    return result->label == OCTC_CLASS_NONE ? OCTC_OK : OCTC_INVALID_ARGUMENT;
}
