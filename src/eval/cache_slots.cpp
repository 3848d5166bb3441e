#include "eval/cache_slots.h"

#include <algorithm>

namespace zebra {

void copy_cache_slot(Cache& cache, int64_t src, int64_t dst, int64_t n_tokens) {
  ZEBRA_CHECK(src >= 0 && src < cache.n_slots && dst >= 0 && dst < cache.n_slots, "copy_cache_slot: slots ", src,
              " -> ", dst, " outside the cache's ", cache.n_slots, " slots");
  ZEBRA_CHECK(n_tokens >= 0 && n_tokens <= cache.n_ctx, "copy_cache_slot: ", n_tokens,
              " tokens do not fit the cache's context of ", cache.n_ctx);
  if (src == dst) return;
  for (KvCache& kv : cache.kv) {  // [slot][pos][kv_dim], so one slot's first positions are contiguous
    if (kv.k.empty()) continue;
    std::copy_n(kv.k_at(src, 0), n_tokens * kv.kv_dim, kv.k_at(dst, 0));
    std::copy_n(kv.v_at(src, 0), n_tokens * kv.kv_dim, kv.v_at(dst, 0));
  }
  for (MlaCache& lat : cache.latent) {  // [slot][pos][width]
    if (lat.latent.empty()) continue;
    std::copy_n(lat.at(src, 0), n_tokens * lat.width, lat.at(dst, 0));
  }
  for (Mamba2State& st : cache.ssm) {  // fixed-size state per slot
    if (st.ssm.empty()) continue;
    ZEBRA_CHECK(st.next_pos[src] == n_tokens, "copy_cache_slot: the Mamba2 state of slot ", src, " is at position ",
                st.next_pos[src], ", not ", n_tokens, " (a state cannot be rewound)");
    std::copy_n(st.conv_at(src), st.conv_dim * st.d_conv, st.conv_at(dst));
    std::copy_n(st.ssm_at(src), st.ssm_size, st.ssm_at(dst));
    st.next_pos[dst] = st.next_pos[src];
  }
}

}  // namespace zebra
