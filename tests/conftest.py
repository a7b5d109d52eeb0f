"""Test configuration: fixtures live as plugins in tests/fixtures/."""

pytest_plugins = ["tests.fixtures.audio", "tests.fixtures.models", "tests.fixtures.serve", "tests.fixtures.api",
                  "tests.fixtures.db", "tests.fixtures.s3", "tests.fixtures.worker", "tests.fixtures.fake_stripe",
                  "tests.fixtures.fake_llm", "tests.fixtures.browser", "tests.fixtures.services",
                  "tests.fixtures.fake_sentry", "tests.fixtures.benchmarks"]
