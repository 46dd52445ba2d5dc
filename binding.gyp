{
  "targets": [
    {
      "target_name": "userfan",
      "sources": [
        "native/errors-args.c",
        "native/tun.c",
        "native/iface.c",
        "native/raw.c",
        "native/packet.c",
        "native/sum.c",
        "native/wait.c",
        "native/bpf.c",
        "native/misc.c",
        "native/module.c"
      ],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
