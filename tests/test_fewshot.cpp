// Few-shot contexts (zebra eval --num-fewshot): lm-eval's layout on hand-made tasks against hand-written
// strings, draws that never include the item, reproduce by seed, and the CLI's flags and errors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>

#include "eval/fewshot.h"
#include "support.h"

using namespace zebra;
using nlohmann::json;

namespace {

Task multiple_choice(int n) {
  Task t;
  t.name = "mc", t.path = "mc.jsonl", t.schema = TaskSchema::MultipleChoice;
  for (int i = 0; i < n; ++i) {
    TaskItem it;
    it.line = i + 1;
    const std::string q = "Question " + std::to_string(i) + ": what?\nAnswer:";
    it.contexts = {q, q};
    it.continuations = {"yes " + std::to_string(i), "no " + std::to_string(i)};
    it.gold = i % 2;
    t.items.push_back(it);
  }
  return t;
}

// The examples an item got, by the index of their question in the pool (from the rendered context).
std::vector<int> shots_of(const std::string& context) {
  std::vector<int> out;
  for (size_t at = 0; (at = context.find("Question ", at)) != std::string::npos; at += 9)
    out.push_back(std::stoi(context.substr(at + 9)));
  out.pop_back();  // the item's own question comes last
  return out;
}

}  // namespace

TEST(Fewshot, RenderedContextsFollowLmEvalsLayout) {
  // Two examples from a separate pool: each is its context + " " + gold continuation, then "\n\n".
  Task task = multiple_choice(1), pool = multiple_choice(2);
  pool.path = "pool.jsonl";
  for (TaskItem& it : pool.items)
    for (std::string& c : it.contexts) c = "Pool " + c;
  FewshotOptions o;
  o.k = 2;
  Task out = with_fewshot(task, &pool, o);
  const std::string a = "Pool Question 0: what?\nAnswer: yes 0\n\n", b = "Pool Question 1: what?\nAnswer: no 1\n\n";
  const std::string item = "Question 0: what?\nAnswer:";
  ASSERT_EQ(out.items[0].contexts.size(), 2u);
  EXPECT_TRUE(out.items[0].contexts[0] == a + b + item || out.items[0].contexts[0] == b + a + item)
      << out.items[0].contexts[0];
  EXPECT_EQ(out.items[0].contexts[0], out.items[0].contexts[1]);
  EXPECT_EQ(out.items[0].continuations, task.items[0].continuations);

  // Partial scoring: the gold context option + the continuation; language modelling: context +
  // continuation, with no extra space where the context already ends in one.
  Task wino;
  wino.name = "w", wino.schema = TaskSchema::PartialScoring;
  TaskItem w1;
  w1.contexts = {"Ann helped Bob so Ann", "Ann helped Bob so Bob"};
  w1.continuations = {"was thanked.", "was thanked."};
  w1.gold = 1;
  TaskItem w2 = w1;
  w2.contexts = {"X or Y: X", "X or Y: Y"};
  w2.gold = 0;
  wino.items = {w1, w2};
  o.k = 1;
  Task wo = with_fewshot(wino, nullptr, o);
  EXPECT_EQ(wo.items[0].contexts[0], "X or Y: X was thanked.\n\nAnn helped Bob so Ann");
  EXPECT_EQ(wo.items[0].contexts[1], "X or Y: X was thanked.\n\nAnn helped Bob so Bob");
  EXPECT_EQ(wo.items[1].contexts[0], "Ann helped Bob so Bob was thanked.\n\nX or Y: X");

  Task lm;
  lm.name = "l", lm.schema = TaskSchema::LanguageModelling;
  TaskItem l1, l2;
  l1.contexts = {"The cat sat on the "}, l1.continuations = {"mat"};
  l2.contexts = {"One, two,"}, l2.continuations = {"three"};
  l1.gold = l2.gold = -1;
  lm.items = {l1, l2};
  Task lo = with_fewshot(lm, nullptr, o);
  EXPECT_EQ(lo.items[0].contexts[0], "One, two, three\n\nThe cat sat on the ");
  EXPECT_EQ(lo.items[1].contexts[0], "The cat sat on the mat\n\nOne, two,");
  EXPECT_EQ(render_shot(l1, TaskSchema::LanguageModelling), "The cat sat on the mat");
  EXPECT_EQ(join_target("a", " b"), "a b");
  EXPECT_EQ(join_target("a\n", "b"), "a\nb");
}

TEST(Fewshot, TheItemIsNeverAmongItsOwnShotsAndTheSeedReproduces) {
  const Task task = multiple_choice(12);
  for (bool shared : {false, true}) {
    SCOPED_TRACE(shared ? "shared" : "per item");
    FewshotOptions o;
    o.k = 5, o.shared = shared;
    const Task a = with_fewshot(task, nullptr, o), b = with_fewshot(task, nullptr, o);
    o.seed = 99;
    const Task c = with_fewshot(task, nullptr, o);
    bool any_difference = false;
    std::set<std::vector<int>> distinct;
    for (size_t i = 0; i < task.items.size(); ++i) {
      const std::vector<int> s = shots_of(a.items[i].contexts[0]);
      ASSERT_EQ(s.size(), 5u);
      EXPECT_EQ(std::set<int>(s.begin(), s.end()).size(), 5u) << "drawn without replacement";
      for (int e : s) EXPECT_NE(e, static_cast<int>(i)) << "item " << i << " among its own shots";
      EXPECT_EQ(a.items[i].contexts, b.items[i].contexts) << "same seed, same draws";
      any_difference = any_difference || a.items[i].contexts != c.items[i].contexts;
      std::vector<int> sorted = s;
      std::sort(sorted.begin(), sorted.end());
      distinct.insert(sorted);
    }
    EXPECT_TRUE(any_difference) << "another seed draws other examples";
    if (shared) {
      // Every item not drawn gets the same five: at most the five drawn items plus one set differ.
      EXPECT_LE(distinct.size(), 6u);
      int same = 0;
      for (size_t i = 0; i < task.items.size(); ++i) same += shots_of(a.items[i].contexts[0]) == shots_of(a.items[0].contexts[0]);
      EXPECT_GE(same, 6);
    } else {
      EXPECT_GT(distinct.size(), 6u) << "each item draws its own examples";
    }
  }
  // An external pool that contains the item (by content) never shows it either.
  Task pool = multiple_choice(6);
  FewshotOptions o;
  o.k = 5;
  const Task out = with_fewshot(multiple_choice(6), &pool, o);
  for (size_t i = 0; i < 6; ++i)
    for (int e : shots_of(out.items[i].contexts[0])) EXPECT_NE(e, static_cast<int>(i));
}

TEST(Fewshot, TooFewExamplesOrAnotherSchemaAreErrors) {
  FewshotOptions o;
  o.k = 3;
  std::string msg = test::error_message([&] { with_fewshot(multiple_choice(3), nullptr, o); });
  EXPECT_NE(msg.find("--num-fewshot 3 needs 3 examples other than the item (mc.jsonl:1), but the task has only 2"),
            std::string::npos)
      << msg;
  Task lm;
  lm.name = "l", lm.path = "l.jsonl", lm.schema = TaskSchema::LanguageModelling;
  lm.items.resize(4);
  msg = test::error_message([&] { with_fewshot(multiple_choice(4), &lm, o); });
  EXPECT_NE(msg.find("the few-shot examples in l.jsonl are language modelling items, the task's are multiple choice"),
            std::string::npos)
      << msg;
}

TEST(FewshotCli, FlagsReachTheResultsAndBadOnesAreErrors) {
  ZEBRA_REQUIRE_ASSET(dir, "models/stories260K");
  const std::string tmp = test::temp_dir(), task = tmp + "/story.jsonl";
  std::string jsonl;
  const char* words[] = {"ball", "park", "tree", "cat", "dog", "sun"};
  for (int i = 0; i < 6; ++i)
    jsonl += json({{"query", std::string("Lily saw a")}, {"choices", {words[i], "xq"}}, {"gold", 0}}).dump() + "\n";
  test::write_file(task, jsonl);
  test::write_file(tmp + "/story_train.jsonl", jsonl);
  const std::string base = "eval -t 1 -m " + dir + "/stories260K.bin --task story=" + task + " --json ";
  for (const std::string& extra : {std::string("--num-fewshot 2"), std::string("--num-fewshot 2 --fewshot-shared"),
                                   std::string("--num-fewshot 2 --fewshot-split train"),
                                   "--num-fewshot 2 --fewshot-file " + tmp + "/story_train.jsonl"}) {
    SCOPED_TRACE(extra);
    test::CliRun r = test::zebra_cli(base + extra);
    ASSERT_EQ(r.status, 0) << r.err;
    json j = json::parse(r.out);
    EXPECT_EQ(j["n-shot"]["story"], 2);
    EXPECT_EQ(j["config"]["num_fewshot"], 2);
    EXPECT_EQ(j["config"]["fewshot_seed"], 1234);
  }
  test::CliRun r = test::zebra_cli(base + "--num-fewshot 2 --fewshot-split dev");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("--fewshot-split dev: task 'story' has no file " + tmp + "/story_dev.jsonl (there: story_train.jsonl)"),
            std::string::npos)
      << r.err;
  r = test::zebra_cli(base + "--fewshot-shared");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("need --num-fewshot K > 0"), std::string::npos) << r.err;
  r = test::zebra_cli(base + "--num-fewshot 6");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("but the task has only 5"), std::string::npos) << r.err;
}
