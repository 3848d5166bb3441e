// zebra: one binary, one subcommand per job. Logs go to stderr, results to stdout.
#include <cstdio>

#include "common.h"
#include "core/error.h"
#include "core/log.h"

namespace zebra::cli { void register_synth(CLI::App& app); void register_data(CLI::App& app); }  // cmd_synth/cmd_data

int main(int argc, char** argv) {
  CLI::App app{"zebra: compose, distil and run Zebra-Llama hybrids (MLA + Mamba2) from Llama models"};
  app.require_subcommand(1);
  bool quiet = false, verbose = false;
  app.add_flag("-q,--quiet", quiet, "only results and errors");
  app.add_flag("-v,--verbose", verbose, "debug logging");
  app.set_version_flag("--version", "zebra 0.1.0");
  app.parse_complete_callback([&] {
    zebra::set_log_level(quiet ? zebra::LogLevel::Quiet : verbose ? zebra::LogLevel::Debug : zebra::LogLevel::Info);
  });

  zebra::cli::register_info(app);
  zebra::cli::register_generate(app);
  zebra::cli::register_chat(app);
  zebra::cli::register_tokenize(app);
  zebra::cli::register_perplexity(app);
  zebra::cli::register_bench(app);
  zebra::cli::register_compose(app);
  zebra::cli::register_synth(app);
  zebra::cli::register_data(app);
  zebra::cli::register_select(app);
  zebra::cli::register_eval(app);
  zebra::cli::register_distill(app);
  zebra::cli::register_dpo(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const zebra::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
