--
-- PostgreSQL database dump
--

\restrict ytubdbeIDySX1aPdxm0XJlcX9waYqhJvZbzxOrWYA5oOAeRDJhrD14XsjpuvBA9

-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: model_versions; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.model_versions (
    sha256 character varying(64) NOT NULL,
    name character varying(200) NOT NULL,
    path text,
    size_bytes integer,
    parent_sha256 character varying(64),
    created_at timestamp with time zone NOT NULL,
    meta jsonb NOT NULL
);


--
-- Name: runs; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.runs (
    id integer NOT NULL,
    kind character varying(32) NOT NULL,
    model_version character varying(64),
    created_at timestamp with time zone NOT NULL,
    status character varying(16) NOT NULL,
    params jsonb NOT NULL,
    results jsonb NOT NULL,
    machine jsonb NOT NULL,
    parent_run_id integer,
    note text
);


--
-- Name: runs_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.runs_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: runs_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.runs_id_seq OWNED BY public.runs.id;


--
-- Name: runs id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.runs ALTER COLUMN id SET DEFAULT nextval('public.runs_id_seq'::regclass);


--
-- Data for Name: model_versions; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.model_versions VALUES ('0bb1c57ff80c1ab66e49fe3366bc1dd6b76eeab8d404c898c7f7d6bd409ba438', 'mlp', 'models/mlp.onnx', 3000, NULL, '2026-12-03 08:45:12.968156+00', '{"opset": 17}');
INSERT INTO public.model_versions VALUES ('84327358149f7c16b0fabf3585761e57a87119c89f3ae4cd1ddd2025ad8a2475', 'mlp.int8', 'models/mlp.int8.onnx', NULL, '0bb1c57ff80c1ab66e49fe3366bc1dd6b76eeab8d404c898c7f7d6bd409ba438', '2026-12-03 08:45:12.971682+00', '{}');
INSERT INTO public.model_versions VALUES ('ef4a7442cdc598c51a2e3cd953fedac13fde4a7ef63c7faad06ea702faecaacc', 'mlp.int8.pruned', NULL, NULL, '84327358149f7c16b0fabf3585761e57a87119c89f3ae4cd1ddd2025ad8a2475', '2026-12-03 08:45:12.972946+00', '{}');


--
-- Data for Name: runs; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.runs VALUES (1, 'profile', '0bb1c57ff80c1ab66e49fe3366bc1dd6b76eeab8d404c898c7f7d6bd409ba438', '2026-12-03 08:45:12.974421+00', 'ok', '{"dims": {}, "inputs": null, "shapes": {}, "batches": [1, 2], "isolate": true, "measure": {"min_runs": 20, "warmup_s": 0.2, "ci_target": 0.05, "confidence": 0.95, "max_time_s": 0.2, "min_time_s": 1.0, "warmup_runs": 3}, "threads": [1], "provider": "CPUExecutionProvider", "int_ranges": {}, "allow_spinning": true, "graph_optimization": "all"}', '{"flops": [{"macs": 640, "flops": 1348, "flops_by_op": {"Add": 32, "Gemm": 260, "Relu": 32, "MatMul": 1024}, "input_shapes": {"x": [1, 16]}, "shape_source": "onnxruntime run", "uncounted_ops": {}}], "model": {"name": "mlp", "path": "/tmp/tmpd9typ__k/mlp.onnx", "opsets": {"ai.onnx": 17}, "sha256": "0bb1c57ff80c1ab66e49fe3366bc1dd6b76eeab8d404c898c7f7d6bd409ba438", "producer": "", "signature": {"inputs": [{"name": "x", "type": "tensor(float)", "dtype": "float32", "shape": ["batch", 16]}], "outputs": [{"name": "y", "type": "tensor(float)", "dtype": "float32", "shape": ["batch", 4]}]}, "size_bytes": 2924}, "notes": [], "engine": {"providers": ["CPUExecutionProvider"], "allow_spinning": true, "inter_op_threads": 1, "intra_op_threads": 1, "graph_optimization": "all"}, "points": [{"dims": {}, "runs": 27967, "batch": 1, "capped": false, "ci_met": true, "max_ms": 4.099786999859134, "min_ms": 0.005388000090533751, "p50_ms": 0.00559799991606269, "p90_ms": 0.009903999853122514, "p99_ms": 0.012008000112473383, "mean_ms": 0.00690929992461204, "seconds": 0.20000365300006706, "threads": 1, "ci_low_ms": 0.00559799991606269, "ci_high_ms": 0.005598000143436366, "items_per_s": 144732.46362310005, "gflops_per_s": 0.19509936096393887, "input_shapes": {"x": [1, 16]}, "ci_half_width": 0.000000020308474352671443, "peak_rss_bytes": 145268736, "baseline_rss_bytes": 131911680}, {"dims": {}, "runs": 24768, "batch": 2, "capped": false, "ci_met": true, "max_ms": 4.078546000073402, "min_ms": 0.005407999879025738, "p50_ms": 0.0056680000852793455, "p90_ms": 0.01113600001190207, "p99_ms": 0.012978999923234369, "mean_ms": 0.007893022651371866, "seconds": 0.20212723700001334, "threads": 1, "ci_low_ms": 0.0056680000852793455, "ci_high_ms": 0.005669000074703945, "items_per_s": 253388.35175550714, "gflops_per_s": 0.3415674981664236, "input_shapes": {"x": [2, 16]}, "ci_half_width": 0.00008821360352450052, "peak_rss_bytes": 145289216, "baseline_rss_bytes": 131911680}], "static": {"nodes": 4, "opsets": {"ai.onnx": 17}, "file_bytes": 2924, "parameters": 676, "op_histogram": {"Add": 1, "Gemm": 1, "Relu": 1, "MatMul": 1}, "bytes_by_dtype": {"float": 2704}, "initializer_bytes": 2704, "parameter_tensors": 4, "weight_memory_bytes": {"fp16": 1352, "fp32": 2704, "int4": 338, "int8": 676}}, "summary": "mlp: 676 params, 0.0 MB; best 253,388 items/s at batch 2 x 1 threads; p50 0.006 ms at batch 1 x 1 threads", "session_rss_bytes": {"1": 13377536}}', '{"os": "Linux 6.18.44-fc-v1098", "python": "3.11.7", "has_vnni": true, "cpu_model": "AMD EPYC", "isa_flags": ["avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16"], "libraries": {"onnx": "1.23.2", "numpy": "2.4.6", "torch": "2.13.0+cpu", "modelscale": "0.1.0", "onnxruntime": "1.32.0", "transformers": "5.24.0"}, "memory_bytes": 25275973632, "usable_cores": 2, "logical_cores": 2, "physical_cores": 2}', NULL, NULL);
INSERT INTO public.runs VALUES (2, 'compress', '0bb1c57ff80c1ab66e49fe3366bc1dd6b76eeab8d404c898c7f7d6bd409ba438', '2026-12-03 08:45:12.976406+00', 'ok', '{"recipes": ["int8", "prune50"], "max_drop": 0.01}', '{"trials": [{"ok": true, "drop": 0.0042, "recipe": "int8"}, {"drop": null, "recipe": "prune50"}], "summary": "int8: 2.1x faster, accuracy -0.42%", "accuracy_drop": 0.0042, "chosen_sha256": "84327358149f7c16b0fabf3585761e57a87119c89f3ae4cd1ddd2025ad8a2475"}', '{"os": "Linux 6.18.44-fc-v1098", "python": "3.11.7", "has_vnni": true, "cpu_model": "AMD EPYC", "isa_flags": ["avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16"], "libraries": {"onnx": "1.23.2", "numpy": "2.4.6", "torch": "2.13.0+cpu", "modelscale": "0.1.0", "onnxruntime": "1.32.0", "transformers": "5.24.0"}, "memory_bytes": 25275973632, "usable_cores": 2, "logical_cores": 2, "physical_cores": 2}', 1, NULL);
INSERT INTO public.runs VALUES (3, 'profile', '84327358149f7c16b0fabf3585761e57a87119c89f3ae4cd1ddd2025ad8a2475', '2026-12-03 08:45:12.977769+00', 'ok', '{"dims": {}, "inputs": null, "shapes": {}, "batches": [1, 2], "isolate": true, "measure": {"min_runs": 20, "warmup_s": 0.2, "ci_target": 0.05, "confidence": 0.95, "max_time_s": 0.2, "min_time_s": 1.0, "warmup_runs": 3}, "threads": [1], "provider": "CPUExecutionProvider", "int_ranges": {}, "allow_spinning": true, "graph_optimization": "all"}', '{"flops": [{"macs": 640, "flops": 1348, "flops_by_op": {"Add": 32, "Gemm": 260, "Relu": 32, "MatMul": 1024}, "input_shapes": {"x": [1, 16]}, "shape_source": "onnxruntime run", "uncounted_ops": {}}], "model": {"name": "mlp", "path": "/tmp/tmpd9typ__k/mlp.onnx", "opsets": {"ai.onnx": 17}, "sha256": "0bb1c57ff80c1ab66e49fe3366bc1dd6b76eeab8d404c898c7f7d6bd409ba438", "producer": "", "signature": {"inputs": [{"name": "x", "type": "tensor(float)", "dtype": "float32", "shape": ["batch", 16]}], "outputs": [{"name": "y", "type": "tensor(float)", "dtype": "float32", "shape": ["batch", 4]}]}, "size_bytes": 2924}, "notes": [], "engine": {"providers": ["CPUExecutionProvider"], "allow_spinning": true, "inter_op_threads": 1, "intra_op_threads": 1, "graph_optimization": "all"}, "points": [{"dims": {}, "runs": 27967, "batch": 1, "capped": false, "ci_met": true, "max_ms": 4.099786999859134, "min_ms": 0.005388000090533751, "p50_ms": 0.00559799991606269, "p90_ms": 0.009903999853122514, "p99_ms": 0.012008000112473383, "mean_ms": 0.00690929992461204, "seconds": 0.20000365300006706, "threads": 1, "ci_low_ms": 0.00559799991606269, "ci_high_ms": 0.005598000143436366, "items_per_s": 144732.46362310005, "gflops_per_s": 0.19509936096393887, "input_shapes": {"x": [1, 16]}, "ci_half_width": 0.000000020308474352671443, "peak_rss_bytes": 145268736, "baseline_rss_bytes": 131911680}, {"dims": {}, "runs": 24768, "batch": 2, "capped": false, "ci_met": true, "max_ms": 4.078546000073402, "min_ms": 0.005407999879025738, "p50_ms": 0.0056680000852793455, "p90_ms": 0.01113600001190207, "p99_ms": 0.012978999923234369, "mean_ms": 0.007893022651371866, "seconds": 0.20212723700001334, "threads": 1, "ci_low_ms": 0.0056680000852793455, "ci_high_ms": 0.005669000074703945, "items_per_s": 253388.35175550714, "gflops_per_s": 0.3415674981664236, "input_shapes": {"x": [2, 16]}, "ci_half_width": 0.00008821360352450052, "peak_rss_bytes": 145289216, "baseline_rss_bytes": 131911680}], "static": {"nodes": 4, "opsets": {"ai.onnx": 17}, "file_bytes": 2924, "parameters": 676, "op_histogram": {"Add": 1, "Gemm": 1, "Relu": 1, "MatMul": 1}, "bytes_by_dtype": {"float": 2704}, "initializer_bytes": 2704, "parameter_tensors": 4, "weight_memory_bytes": {"fp16": 1352, "fp32": 2704, "int4": 338, "int8": 676}}, "summary": "mlp: 676 params, 0.0 MB; best 253,388 items/s at batch 2 x 1 threads; p50 0.006 ms at batch 1 x 1 threads", "session_rss_bytes": {"1": 13377536}}', '{"os": "Linux 6.18.44-fc-v1098", "python": "3.11.7", "has_vnni": true, "cpu_model": "AMD EPYC", "isa_flags": ["avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16"], "libraries": {"onnx": "1.23.2", "numpy": "2.4.6", "torch": "2.13.0+cpu", "modelscale": "0.1.0", "onnxruntime": "1.32.0", "transformers": "5.24.0"}, "memory_bytes": 25275973632, "usable_cores": 2, "logical_cores": 2, "physical_cores": 2}', 2, NULL);
INSERT INTO public.runs VALUES (4, 'plan', '84327358149f7c16b0fabf3585761e57a87119c89f3ae4cd1ddd2025ad8a2475', '2026-12-03 08:45:12.978842+00', 'ok', '{"rps": 1000, "dims": {"seq": 32}, "p99_ms": 100}', '{"p99_ms": 41.5, "summary": "3 replicas x 2 threads", "replicas": 3}', '{"os": "Linux 6.18.44-fc-v1098", "python": "3.11.7", "has_vnni": true, "cpu_model": "AMD EPYC", "isa_flags": ["avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16"], "libraries": {"onnx": "1.23.2", "numpy": "2.4.6", "torch": "2.13.0+cpu", "modelscale": "0.1.0", "onnxruntime": "1.32.0", "transformers": "5.24.0"}, "memory_bytes": 25275973632, "usable_cores": 2, "logical_cores": 2, "physical_cores": 2}', 3, NULL);
INSERT INTO public.runs VALUES (5, 'load', '84327358149f7c16b0fabf3585761e57a87119c89f3ae4cd1ddd2025ad8a2475', '2026-12-03 08:45:12.979672+00', 'failed', '{"rps": 1000, "duration_s": 5.0}', '{"errors": {"connect": 12}, "summary": "server did not answer", "achieved_rps": 0.0}', '{"os": "Linux 6.18.44-fc-v1098", "python": "3.11.7", "has_vnni": true, "cpu_model": "AMD EPYC", "isa_flags": ["avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16"], "libraries": {"onnx": "1.23.2", "numpy": "2.4.6", "torch": "2.13.0+cpu", "modelscale": "0.1.0", "onnxruntime": "1.32.0", "transformers": "5.24.0"}, "memory_bytes": 25275973632, "usable_cores": 2, "logical_cores": 2, "physical_cores": 2}', 4, 'port 8000 was taken');
INSERT INTO public.runs VALUES (6, 'note', 'ef4a7442cdc598c51a2e3cd953fedac13fde4a7ef63c7faad06ea702faecaacc', '2026-12-03 08:45:12.980431+00', 'ok', '{}', '{"text": "pruned by hand: ünïcode — 雪"}', '{"os": "Linux 6.18.44-fc-v1098", "python": "3.11.7", "has_vnni": true, "cpu_model": "AMD EPYC", "isa_flags": ["avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16"], "libraries": {"onnx": "1.23.2", "numpy": "2.4.6", "torch": "2.13.0+cpu", "modelscale": "0.1.0", "onnxruntime": "1.32.0", "transformers": "5.24.0"}, "memory_bytes": 25275973632, "usable_cores": 2, "logical_cores": 2, "physical_cores": 2}', NULL, NULL);
INSERT INTO public.runs VALUES (7, 'note', NULL, '2026-12-03 08:45:12.981264+00', 'ok', '{"big": 9007199254740992, "none": null, "empty": {}}', '{"text": "no model"}', '{"os": "Linux 6.18.44-fc-v1098", "python": "3.11.7", "has_vnni": true, "cpu_model": "AMD EPYC", "isa_flags": ["avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16"], "libraries": {"onnx": "1.23.2", "numpy": "2.4.6", "torch": "2.13.0+cpu", "modelscale": "0.1.0", "onnxruntime": "1.32.0", "transformers": "5.24.0"}, "memory_bytes": 25275973632, "usable_cores": 2, "logical_cores": 2, "physical_cores": 2}', NULL, NULL);


--
-- Name: runs_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.runs_id_seq', 7, true);


--
-- Name: model_versions model_versions_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.model_versions
    ADD CONSTRAINT model_versions_pkey PRIMARY KEY (sha256);


--
-- Name: runs runs_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.runs
    ADD CONSTRAINT runs_pkey PRIMARY KEY (id);


--
-- Name: ix_model_versions_name; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_model_versions_name ON public.model_versions USING btree (name);


--
-- Name: ix_model_versions_parent_sha256; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_model_versions_parent_sha256 ON public.model_versions USING btree (parent_sha256);


--
-- Name: ix_runs_created_at; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_runs_created_at ON public.runs USING btree (created_at);


--
-- Name: ix_runs_kind; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_runs_kind ON public.runs USING btree (kind);


--
-- Name: ix_runs_model_version; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_runs_model_version ON public.runs USING btree (model_version);


--
-- Name: ix_runs_parent_run_id; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX ix_runs_parent_run_id ON public.runs USING btree (parent_run_id);


--
-- Name: runs runs_parent_run_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.runs
    ADD CONSTRAINT runs_parent_run_id_fkey FOREIGN KEY (parent_run_id) REFERENCES public.runs(id) ON DELETE SET NULL;


--
-- PostgreSQL database dump complete
--

\unrestrict ytubdbeIDySX1aPdxm0XJlcX9waYqhJvZbzxOrWYA5oOAeRDJhrD14XsjpuvBA9

