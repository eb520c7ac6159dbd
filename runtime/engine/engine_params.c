/* engine_params.c — request parameter defaults (kept apart from engine.c so
 * the submission validator and its fuzz harness need no model code). */
#include "runtime/engine/engine.h"

struct pf_request_params pf_request_params_default(void)
{
	return (struct pf_request_params){
		.sampling = pf_sampling_params_default(),
		.n = 1,
		.beam_width = 0,
		.length_penalty = 1.0f,
	};
}
