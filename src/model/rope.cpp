#include "model/rope.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace zebra {

void RopeTable::angles(int64_t pos, float* cos, float* sin) const {
  for (int64_t i = 0; i < half(); ++i) {
    // fp32 angle as transformers computes it (position_ids.float() * inv_freq).
    float a = static_cast<float>(pos) * inv_freq[i];
    cos[i] = std::cos(a) * attention_scale;
    sin[i] = std::sin(a) * attention_scale;
  }
}

static std::vector<float> base_inv_freq(double base, int64_t dim) {
  std::vector<float> f(dim / 2);
  for (int64_t i = 0; i < dim / 2; ++i)
    f[i] = static_cast<float>(1.0 / std::pow(base, static_cast<double>(2 * i) / dim));
  return f;
}

static double yarn_mscale(double scale, double m) { return scale <= 1.0 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; }

RopeTable make_rope_table(const LlamaConfig& cfg, int64_t dim, int64_t seq_len) {
  const RopeScaling& rs = cfg.rope_scaling;
  RopeTable t;
  switch (rs.type) {
    case RopeScaling::Type::None:
      t.inv_freq = base_inv_freq(cfg.rope_theta, dim);
      break;
    case RopeScaling::Type::Linear:
      t.inv_freq = base_inv_freq(cfg.rope_theta, dim);
      for (float& f : t.inv_freq) f = static_cast<float>(f / rs.factor);
      break;
    case RopeScaling::Type::Dynamic: {
      // NTK-aware: past the trained length the base grows so the lowest frequency stretches to fit.
      int64_t max_pos = rs.original_max_position_embeddings > 0 ? rs.original_max_position_embeddings
                                                                 : cfg.max_position_embeddings;
      double base = cfg.rope_theta;
      if (seq_len > max_pos) {
        base = cfg.rope_theta * std::pow(rs.factor * seq_len / max_pos - (rs.factor - 1.0),
                                         static_cast<double>(dim) / (dim - 2));
      }
      t.inv_freq = base_inv_freq(base, dim);
      break;
    }
    case RopeScaling::Type::Llama3: {
      t.inv_freq = base_inv_freq(cfg.rope_theta, dim);
      double old_ctx = rs.original_max_position_embeddings > 0 ? rs.original_max_position_embeddings : 8192;
      double low_wavelen = old_ctx / rs.low_freq_factor;
      double high_wavelen = old_ctx / rs.high_freq_factor;
      for (float& f : t.inv_freq) {
        double wavelen = 2.0 * M_PI / f;
        double out;
        if (wavelen > low_wavelen) {
          out = f / rs.factor;  // long wavelengths: interpolate fully
        } else if (wavelen < high_wavelen) {
          out = f;  // short wavelengths: keep
        } else {
          double smooth = (old_ctx / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
          out = (1.0 - smooth) * f / rs.factor + smooth * f;
        }
        t.inv_freq[&f - t.inv_freq.data()] = static_cast<float>(out);
      }
      break;
    }
    case RopeScaling::Type::Yarn: {
      double orig = rs.original_max_position_embeddings > 0 ? rs.original_max_position_embeddings
                                                            : cfg.max_position_embeddings;
      double base = cfg.rope_theta;
      auto corr_dim = [&](double rot) { return dim * std::log(orig / (rot * 2.0 * M_PI)) / (2.0 * std::log(base)); };
      double low = std::max(std::floor(corr_dim(rs.beta_fast)), 0.0);
      double high = std::min(std::ceil(corr_dim(rs.beta_slow)), static_cast<double>(dim - 1));
      if (low == high) high += 0.001;  // avoid a zero-width ramp
      std::vector<float> extra = base_inv_freq(base, dim);
      t.inv_freq.resize(dim / 2);
      for (int64_t j = 0; j < dim / 2; ++j) {
        double ramp = std::clamp((j - low) / (high - low), 0.0, 1.0);
        double inter = extra[j] / rs.factor;
        // ramp 0 keeps the original (extrapolated) frequency, ramp 1 divides by factor.
        t.inv_freq[j] = static_cast<float>(inter * ramp + extra[j] * (1.0 - ramp));
      }
      if (rs.attention_factor > 0) {
        t.attention_scale = static_cast<float>(rs.attention_factor);
      } else if (rs.mscale_all_dim > 0) {
        t.attention_scale = static_cast<float>(yarn_mscale(rs.factor, rs.mscale) / yarn_mscale(rs.factor, rs.mscale_all_dim));
      } else {
        t.attention_scale = static_cast<float>(yarn_mscale(rs.factor, 1.0));
      }
      break;
    }
  }
  if (!rs.freq_factors.empty()) {
    ZEBRA_CHECK(static_cast<int64_t>(rs.freq_factors.size()) == dim / 2, "rope frequency factors: expected ",
                dim / 2, " values, got ", rs.freq_factors.size());
    for (int64_t j = 0; j < dim / 2; ++j) t.inv_freq[j] /= rs.freq_factors[j];
  }
  return t;
}

}  // namespace zebra
