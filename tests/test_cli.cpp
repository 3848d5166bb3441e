// The zebra binary end to end: results on stdout, errors with a message and a non-zero exit.
#include <cmath>
#include <nlohmann/json.hpp>

#include "support.h"

using namespace zebra;
using test::CliRun;
using test::zebra_cli;


TEST(Cli, InfoOnReleasedLayoutsReproducesThePapersFigures) {
  // Spec §1.5-1.6: parameters and KV % of AMD's six released Zebra-Llama models, from configs alone.
  struct Expect {
    const char* dir;
    double params_b, kv_percent;
  } expected[] = {{"1B-8MLA-8Mamba", 1.2671, 7.81},   {"1B-4MLA-12Mamba", 1.2857, 3.91},
                  {"3B-14MLA-14Mamba", 3.2692, 4.69}, {"3B-6MLA-22Mamba", 3.3896, 2.01},
                  {"8B-16MLA-16Mamba", 8.1857, 5.47}, {"8B-8MLA-24Mamba", 8.3791, 2.73}};
  for (const Expect& e : expected) {
    CliRun r = zebra_cli("info --json " + test::fixture(std::string("hybrid_configs/") + e.dir));
    ASSERT_EQ(r.status, 0) << r.err;
    nlohmann::json j = nlohmann::json::parse(r.out);
    EXPECT_NEAR(j["params"].get<double>() / 1e9, e.params_b, 5e-5) << e.dir;
    EXPECT_NEAR(j["kv_percent_of_source"].get<double>(), e.kv_percent, 5e-3) << e.dir;
    EXPECT_TRUE(j.contains("layers") && j.contains("kv_bytes_per_token") && j.contains("state_bytes_per_sequence"));
  }
}

TEST(Cli, GenerateStories260KPrintsOnlyTheGeneratedText) {
  ZEBRA_REQUIRE_ASSET(dir, "models/stories260K");
  CliRun r = zebra_cli("generate -m " + dir + "/stories260K.bin -n 30 --temp 0");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.rfind("Once upon a time, there was a little girl named Lily.", 0), 0u) << r.out;
  EXPECT_EQ(r.out.find("loaded"), std::string::npos) << "logs must go to stderr";
}

TEST(Cli, PerplexityJsonHasTheDocumentedKeys) {
  ZEBRA_REQUIRE_ASSET(dir, "models/stories260K");
  ZEBRA_REQUIRE_ASSET(text, "text/tinystories_valid.txt");
  CliRun r = zebra_cli("perplexity -m " + dir + "/stories260K.bin -f " + text + " -c 256 --chunks 4 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["tokens"].get<int64_t>(), 4 * (256 - 128 - 1));
  // llama2.c reports 1.2968 nats/token for stories260K on TinyStories validation (seq 512, all positions);
  // scored with >= 128 tokens of context it must be in that neighbourhood.
  EXPECT_GT(j["nll_per_token"].get<double>(), 0.9);
  EXPECT_LT(j["nll_per_token"].get<double>(), 1.6);
  EXPECT_NEAR(j["ppl"].get<double>(), std::exp(j["nll_per_token"].get<double>()), 1e-3);
}

TEST(Cli, BadInputGivesAClearErrorAndExitCode) {
  std::string tmp = test::temp_dir();
  test::write_file(tmp + "/bad.gguf", std::string("GGUF\x03\x00\x00\x00", 8));  // truncated after the version
  test::write_file(tmp + "/bad_utf8.txt", "abc\xff\xfe");
  struct Case {
    std::string args, message;
  } cases[] = {
      {"info " + tmp + "/missing.gguf", "does not exist"},
      {"info " + tmp + "/bad.gguf", "bad.gguf"},
      {"info " + tmp, "config.json"},
      {"generate -m " + tmp + "/bad.gguf -p hi", "bad.gguf"},
      {"bench -m " + tmp + "/bad.gguf -p x", "bad.gguf"},
  };
  for (const Case& c : cases) {
    CliRun r = zebra_cli(c.args);
    EXPECT_NE(r.status, 0) << c.args;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.args << "\nstderr: " << r.err;
    EXPECT_EQ(r.err.find("terminate called"), std::string::npos) << r.err;
  }
  std::string stories = test::shared_asset("models/stories260K");
  if (!stories.empty()) {
    CliRun r = zebra_cli("perplexity -m " + stories + "/stories260K.bin -f " + tmp + "/bad_utf8.txt");
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("invalid UTF-8 at byte offset 3"), std::string::npos) << r.err;
    r = zebra_cli("generate -m " + stories + "/stories260K.bin -p 'Once upon a time' -c 4 -n 5");
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("more than the context size 4"), std::string::npos) << r.err;
  }
}

TEST(Cli, ChatKeepsTheConversationAcrossTurns) {
  ZEBRA_REQUIRE_SMOLLM(model);
  // Two turns on stdin; the second question only makes sense with the first turn in context.
  std::string cmd = "sh -c \"printf 'What is the capital of France?\\nAnd of Germany?\\n' | " + test::zebra_binary() +
                    " chat -m " + model + " -n 24 --temp 0\"";
  std::string out, err;
  ASSERT_EQ(test::run_command(cmd, &out, &err), 0) << err;
  size_t paris = out.find("Paris"), berlin = out.find("Berlin");
  EXPECT_NE(paris, std::string::npos) << out;
  EXPECT_NE(berlin, std::string::npos) << out;
  EXPECT_LT(paris, berlin) << out;
}
