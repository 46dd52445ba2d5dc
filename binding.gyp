{
  "targets": [
    {
      "target_name": "userfan",
      "sources": ["native/userfan.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
