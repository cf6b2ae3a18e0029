{
  "target_defaults": {
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions"],
    "cflags": ["-O3", "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter"],
    "cflags_cc": ["-std=c++17", "-O3", "-fexceptions"],
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "native"],
    "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS"]
  },
  "targets": [
    {
      "target_name": "understudy_avx2",
      "type": "static_library",
      "sources": ["<!@(node scripts/sources.mjs avx2)"],
      "cflags": ["<!@(node scripts/sources.mjs flags-avx2)", "-fPIC"]
    },
    {
      "target_name": "understudy_avx512",
      "type": "static_library",
      "sources": ["<!@(node scripts/sources.mjs avx512)"],
      "cflags": ["<!@(node scripts/sources.mjs flags-avx512)", "-fPIC"]
    },
    {
      "target_name": "understudy_payload",
      "type": "none",
      "actions": [
        {
          "action_name": "build_payload",
          "inputs": ["scripts/build-payload.mjs", "<!@(node scripts/build-payload.mjs --inputs)"],
          "outputs": ["<(SHARED_INTERMEDIATE_DIR)/payload/payload_image.h"],
          "action": ["node", "scripts/build-payload.mjs", "<(SHARED_INTERMEDIATE_DIR)/payload"],
          "message": "Building the KVM guest payload"
        }
      ]
    },
    {
      "target_name": "understudy",
      "dependencies": ["understudy_avx2", "understudy_avx512", "understudy_payload"],
      "include_dirs": ["<(SHARED_INTERMEDIATE_DIR)/payload"],
      "sources": [
        "<!@(node scripts/sources.mjs kernels)",
        "<!@(node scripts/sources.mjs addon)"
      ],
      "libraries": ["-lpthread", "-llz4", "-lzstd"]
    }
  ]
}
