// SMART sensitivities and the two-student assembly. The scheme is our reconstruction of spec §3; see
// smart_select.h for every choice the paper leaves open.
#include "compose/smart_select.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>

#include "core/error.h"

namespace zebra {

namespace {

// Logits of one batch take at most about this much memory per copy (teacher probabilities + student
// logits are two copies), which bounds the automatic rows per batch for large vocabularies.
constexpr int64_t kBatchLogitBytes = 256ll << 20;
constexpr int64_t kMaxBatchRows = 16;

void check_same_skeleton(const Model& teacher, const Model& s, const std::string& name) {
  const LlamaConfig &t = teacher.config, &c = s.config;
  ZEBRA_CHECK(s.layers.size() == teacher.layers.size(), name, " has ", s.layers.size(), " layers but the teacher has ",
              teacher.layers.size());
  ZEBRA_CHECK(c.hidden_size == t.hidden_size, name, " has hidden size ", c.hidden_size, " but the teacher has ",
              t.hidden_size);
  ZEBRA_CHECK(c.vocab_size == t.vocab_size, name, " has a vocabulary of ", c.vocab_size,
              " tokens but the teacher has ", t.vocab_size);
  ZEBRA_CHECK(c.intermediate_size == t.intermediate_size, name, " has MLP width ", c.intermediate_size,
              " but the teacher has ", t.intermediate_size);
  ZEBRA_CHECK(s.is_hybrid, name, " is not a Zebra hybrid (its layers are Llama attention)");
}

int64_t auto_batch_rows(const Model& m, const std::vector<std::vector<int32_t>>& rows, int64_t requested) {
  if (requested > 0) return requested;
  int64_t max_len = 1;
  for (const auto& r : rows) max_len = std::max<int64_t>(max_len, static_cast<int64_t>(r.size()));
  const int64_t per_row = max_len * m.config.vocab_size * static_cast<int64_t>(sizeof(float));
  return std::clamp<int64_t>(kBatchLogitBytes / std::max<int64_t>(per_row, 1), 1, kMaxBatchRows);
}

// Rows [first, last) in separate cache slots, every position asking for logits.
Tensor forward_rows(const Model& m, const std::vector<std::vector<int32_t>>& rows, size_t first, size_t last) {
  Batch b;
  int64_t n_ctx = 1;
  for (size_t r = first; r < last; ++r) {
    const auto& row = rows[r];
    n_ctx = std::max<int64_t>(n_ctx, static_cast<int64_t>(row.size()));
    for (size_t j = 0; j < row.size(); ++j)
      b.add(row[j], static_cast<int32_t>(r - first), static_cast<int32_t>(j), true);
  }
  Cache cache = m.make_cache(static_cast<int64_t>(last - first), n_ctx);
  return m.forward(b, cache);
}

// The teacher's side of one batch: probabilities p (in place of the logits) and sum_v p log p per position.
struct TeacherBatch {
  Tensor p;                    // [n, V]
  std::vector<double> neg_h;   // [n] sum_v p_v log p_v
  std::vector<double> p_sum;   // [n] sum_v p_v (1 up to float rounding; kept so KL keeps its exact form)
};

double logsumexp_d(const float* x, int64_t n) {
  float mx = x[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max(mx, x[i]);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::exp(static_cast<double>(x[i]) - mx);
  return mx + std::log(s);
}

TeacherBatch teacher_batch(Tensor logits) {
  const int64_t n = logits.dim(0), V = logits.dim(1);
  TeacherBatch t;
  t.neg_h.assign(n, 0.0);
  t.p_sum.assign(n, 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    float* row = logits.ptr() + i * V;
    const double lse = logsumexp_d(row, V);
    double nh = 0, ps = 0;
    for (int64_t v = 0; v < V; ++v) {
      // The float-rounded p is the distribution used throughout, so KL(p || p) is 0 up to double rounding.
      const double lp = static_cast<double>(row[v]) - lse;
      row[v] = static_cast<float>(std::exp(lp));
      nh += row[v] * lp;
      ps += row[v];
    }
    t.neg_h[i] = nh;
    t.p_sum[i] = ps;
  }
  t.p = std::move(logits);
  return t;
}

// Sum over the batch's positions of KL(p_T || softmax(student logits)), summed in a fixed order so equal
// inputs give bit-equal results whatever the thread count.
double batch_kl_sum(const TeacherBatch& t, const Tensor& s) {
  const int64_t n = s.dim(0), V = s.dim(1);
  ZEBRA_CHECK(t.p.dim(0) == n && t.p.dim(1) == V, "smart: teacher and student logits differ in shape");
  std::vector<double> kl(n);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float* sr = s.ptr() + i * V;
    const float* pr = t.p.ptr() + i * V;
    const double lse = logsumexp_d(sr, V);
    double ps = 0;
    for (int64_t v = 0; v < V; ++v) ps += static_cast<double>(pr[v]) * sr[v];
    // sum_v p (log p - (s - lse)) = neg_h - sum p s + lse * sum p
    kl[i] = t.neg_h[i] - ps + lse * t.p_sum[i];
  }
  double sum = 0;
  for (double k : kl) sum += k;
  return sum;
}

void check_rows(const Model& teacher, const std::vector<std::vector<int32_t>>& rows) {
  ZEBRA_CHECK(!rows.empty(), "smart: no calibration rows");
  const int64_t V = teacher.config.vocab_size;
  for (size_t r = 0; r < rows.size(); ++r) {
    ZEBRA_CHECK(!rows[r].empty(), "smart: calibration row ", r, " is empty");
    for (int32_t t : rows[r])
      ZEBRA_CHECK(t >= 0 && t < V, "smart: calibration row ", r, " has token id ", t,
                  " outside the teacher's vocabulary [0, ", V, ")");
  }
}

}  // namespace

void check_smart_models(const Model& teacher, const Model& mla, const Model& mamba, const std::string& mla_name,
                        const std::string& mamba_name) {
  ZEBRA_CHECK(!teacher.is_hybrid, "the teacher is a Zebra hybrid; SMART compares against the original Llama");
  for (size_t i = 0; i < teacher.layers.size(); ++i)
    ZEBRA_CHECK(teacher.layers[i].kind == LayerKind::Attention, "teacher layer ", i, " is ",
                layer_kind_name(teacher.layers[i].kind), ", expected Llama attention");
  check_same_skeleton(teacher, mla, mla_name);
  check_same_skeleton(teacher, mamba, mamba_name);
  for (size_t i = 0; i < mla.layers.size(); ++i)
    ZEBRA_CHECK(mla.layers[i].kind == LayerKind::Mla, mla_name, " must be all MLA (zebra compose --all-mla), but its layer ", i,
                " is ", layer_kind_name(mla.layers[i].kind));
  for (size_t i = 0; i < mamba.layers.size(); ++i)
    ZEBRA_CHECK(mamba.layers[i].kind == LayerKind::Mamba2, mamba_name,
                " must be all Mamba2 (zebra compose --all-mamba), but its layer ", i, " is ",
                layer_kind_name(mamba.layers[i].kind));
}

std::vector<std::vector<int32_t>> calibration_rows(const Tokenizer& tok, const std::vector<std::string>& texts,
                                                   int64_t n_rows, int64_t seq_len,
                                                   std::vector<int64_t>* rows_per_text) {
  ZEBRA_CHECK(n_rows > 0, "calibration: the number of rows must be positive, got ", n_rows);
  const int32_t bos = tok.adds_bos() ? tok.bos_id() : -1;
  ZEBRA_CHECK(seq_len >= (bos >= 0 ? 2 : 1), "calibration: the sequence length must be at least ",
              bos >= 0 ? 2 : 1, ", got ", seq_len);
  const int64_t chunk = bos >= 0 ? seq_len - 1 : seq_len;
  std::vector<std::vector<int32_t>> rows;
  if (rows_per_text) rows_per_text->assign(texts.size(), 0);
  for (size_t f = 0; f < texts.size() && static_cast<int64_t>(rows.size()) < n_rows; ++f) {
    const std::vector<int32_t> ids = tok.encode(texts[f], false, false);
    for (size_t at = 0; at + chunk <= ids.size() && static_cast<int64_t>(rows.size()) < n_rows; at += chunk) {
      std::vector<int32_t> row;
      row.reserve(seq_len);
      if (bos >= 0) row.push_back(bos);
      row.insert(row.end(), ids.begin() + at, ids.begin() + at + chunk);
      rows.push_back(std::move(row));
      if (rows_per_text) (*rows_per_text)[f] += 1;
    }
  }
  return rows;
}

double mean_kl(const Model& teacher, const Model& student, const std::vector<std::vector<int32_t>>& rows,
               int64_t batch_rows) {
  check_rows(teacher, rows);
  ZEBRA_CHECK(student.config.vocab_size == teacher.config.vocab_size, "KL: the student's vocabulary (",
              student.config.vocab_size, ") differs from the teacher's (", teacher.config.vocab_size, ")");
  const size_t br = static_cast<size_t>(auto_batch_rows(teacher, rows, batch_rows));
  double sum = 0;
  int64_t n = 0;
  for (size_t first = 0; first < rows.size(); first += br) {
    const size_t last = std::min(rows.size(), first + br);
    TeacherBatch t = teacher_batch(forward_rows(teacher, rows, first, last));
    sum += batch_kl_sum(t, forward_rows(student, rows, first, last));
    n += t.p.dim(0);
  }
  return sum / static_cast<double>(n);
}

SmartScores smart_scores(const Model& teacher, const Model& mla, const Model& mamba,
                         const std::vector<std::vector<int32_t>>& rows, const SmartOptions& opts) {
  check_same_skeleton(teacher, mla, "the MLA student");
  check_same_skeleton(teacher, mamba, "the Mamba2 student");
  check_rows(teacher, rows);
  const int64_t L = static_cast<int64_t>(teacher.layers.size());
  int64_t max_len = 0;
  for (const auto& r : rows) max_len = std::max<int64_t>(max_len, static_cast<int64_t>(r.size()));
  for (const Model* m : {&teacher, &mla, &mamba})
    ZEBRA_CHECK(max_len <= m->config.max_position_embeddings, "smart: calibration rows of ", max_len,
                " tokens exceed the context length ", m->config.max_position_embeddings,
                m == &teacher ? " of the teacher" : m == &mla ? " of the MLA student" : " of the Mamba2 student");

  // One working model, the all-Mamba2 assembly; variant l swaps A's layer l in and back out.
  Model work = assemble_hybrid(teacher, mla, mamba, {});
  std::vector<double> sums(L + 1, 0.0);  // [0] = D0, [l+1] = D_l
  const size_t br = static_cast<size_t>(auto_batch_rows(teacher, rows, opts.batch_rows));
  const int64_t n_batches = static_cast<int64_t>((rows.size() + br - 1) / br);
  const int64_t total = n_batches * (L + 2);
  int64_t done = 0, n_tokens = 0;
  for (size_t first = 0; first < rows.size(); first += br) {
    const size_t last = std::min(rows.size(), first + br);
    TeacherBatch t = teacher_batch(forward_rows(teacher, rows, first, last));
    n_tokens += t.p.dim(0);
    if (opts.progress) opts.progress(++done, total);
    sums[0] += batch_kl_sum(t, forward_rows(work, rows, first, last));
    if (opts.progress) opts.progress(++done, total);
    for (int64_t l = 0; l < L; ++l) {
      Layer swapped = mla.layers[l];
      std::swap(work.layers[l], swapped);
      struct Restore {  // put the Mamba2 layer back even if the forward throws
        Model& w;
        Layer& s;
        int64_t l;
        ~Restore() { std::swap(w.layers[l], s); }
      } restore{work, swapped, l};
      sums[l + 1] += batch_kl_sum(t, forward_rows(work, rows, first, last));
      if (opts.progress) opts.progress(++done, total);
    }
  }
  SmartScores s;
  s.tokens = n_tokens;
  s.d0 = sums[0] / static_cast<double>(n_tokens);
  s.d_l.resize(L);
  s.scores.resize(L);
  for (int64_t l = 0; l < L; ++l) {
    s.d_l[l] = sums[l + 1] / static_cast<double>(n_tokens);
    s.scores[l] = s.d0 - s.d_l[l];
  }
  return s;
}

Model assemble_hybrid(const Model& teacher, const Model& mla, const Model& mamba, std::vector<int64_t> mla_layers) {
  check_same_skeleton(teacher, mla, "the MLA student");
  check_same_skeleton(teacher, mamba, "the Mamba2 student");
  const int64_t L = static_cast<int64_t>(teacher.layers.size());
  std::sort(mla_layers.begin(), mla_layers.end());
  for (size_t i = 0; i < mla_layers.size(); ++i) {
    ZEBRA_CHECK(mla_layers[i] >= 0 && mla_layers[i] < L, "assemble: MLA layer ", mla_layers[i],
                " is out of range [0, ", L, ")");
    ZEBRA_CHECK(i == 0 || mla_layers[i] != mla_layers[i - 1], "assemble: MLA layer ", mla_layers[i],
                " is listed twice");
  }

  HybridConfig h = mla.hybrid;  // MLA fields (ranks, rope split, YaRN, lora norms, full kv head)
  const HybridConfig& hm = mamba.hybrid;
  h.d_inner = hm.d_inner;
  h.d_xb = hm.d_xb;
  h.d_state = hm.d_state;
  h.ngroups = hm.ngroups;
  h.d_conv = hm.d_conv;
  h.repeat_kv_before_conv = hm.repeat_kv_before_conv;
  h.mla_layers = mla_layers;
  h.generation = "current";
  // Per-layer ranks only for the MLA layers kept; with overrides the global fields hold the largest
  // kept rank, as compose writes them (the per-layer list is authoritative).
  if (!h.layer_ranks.empty()) {
    std::map<int64_t, std::pair<int64_t, int64_t>> kept;
    for (int64_t l : mla_layers)
      kept[l] = {mla.layers[l].mla_dims.q_rank, mla.layers[l].mla_dims.kv_rank};
    h.layer_ranks = std::move(kept);
    if (!h.layer_ranks.empty()) {
      h.q_lora_rank = 0;
      h.kv_lora_rank = 0;
      for (const auto& [l, r] : h.layer_ranks) {
        h.q_lora_rank = std::max(h.q_lora_rank, r.first);
        h.kv_lora_rank = std::max(h.kv_lora_rank, r.second);
      }
    }
  }

  Model m;
  m.config = teacher.config;
  m.config.tie_word_embeddings = teacher.lm_head.empty();
  m.is_hybrid = true;
  m.embed = teacher.embed;
  m.norm = teacher.norm;
  m.lm_head = teacher.lm_head;
  m.mamba_dims = mamba.mamba_dims;
  m.layers.resize(L);
  for (int64_t i = 0; i < L; ++i) {
    const bool is_mla = std::binary_search(mla_layers.begin(), mla_layers.end(), i);
    m.layers[i] = is_mla ? mla.layers[i] : mamba.layers[i];
  }
  h.validate(m.config, "assemble");
  m.hybrid = std::move(h);
  return m;
}

}  // namespace zebra
