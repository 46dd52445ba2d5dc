/* placeholder: replaced by the native I/O work (issue 3) */
#include <node_api.h>
NAPI_MODULE_INIT() { return exports; }
