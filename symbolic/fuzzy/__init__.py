"""symbolic.fuzzy: differentiable fuzzy logic with the semantics of Logic Tensor Networks (LTN).

Three layers, all pure functions of JAX arrays (``jit``/``vmap``/``grad``-safe, dtype-preserving):

- **connectives** (:mod:`symbolic.fuzzy._ops`): negations ``not_std``, ``not_godel``; t-norms
  ``and_min``, ``and_prod``, ``and_luk``; t-conorms ``or_max``, ``or_prob_sum``, ``or_luk``; implications
  ``implies_kleene_dienes``, ``implies_godel``, ``implies_reichenbach``, ``implies_goguen``,
  ``implies_luk``, ``implies_sigmoidal``; ``equiv``. Each takes ``stable=`` (LTN's projections) and
  ``clip=``.
- **aggregators** (:mod:`symbolic.fuzzy._aggregators`): ``min``, ``max``, ``mean``, ``pmean``,
  ``pmean_error``, ``product``, ``log_product``, with ``axis``, guards (``mask=``) and a defined value on
  empty domains (``empty=``).
- **first-order layer** (:mod:`symbolic.fuzzy._quantifiers`): ``Labelled`` groundings over named
  variables, ``variable``, ``predicate``, ``connective`` (broadcasting over the union of variables),
  ``diag``, ``forall``, ``exists`` (guarded by ``mask=``) and ``sat_agg`` for a knowledge base.

``get(name)`` looks an operator up by name. Values and gradients equal LTNtorch 1.0.2's (see
``tests/symbolic/test_fuzzy.py`` and ``tests/data/ltn_reference.json``).

Example:
    >>> from symbolic import fuzzy
    >>> a = fuzzy.Labelled(jnp.array([0.9, 0.2, 0.6, 0.05]), ("x",))
    >>> b = fuzzy.Labelled(jnp.array([0.8, 0.3, 0.1, 0.5]), ("x",))
    >>> rule = fuzzy.connective(fuzzy.implies_reichenbach, a, b, stable=True)
    >>> round(float(fuzzy.forall("x", rule).value), 6)  # forall x: A(x) -> B(x)
    0.706561
"""

# --- aggregators (symbolic/fuzzy/_aggregators.py) ---
from ._aggregators import log_product as log_product
from ._aggregators import max as max
from ._aggregators import mean as mean
from ._aggregators import min as min
from ._aggregators import pmean as pmean
from ._aggregators import pmean_error as pmean_error
from ._aggregators import product as product

# --- connectives (symbolic/fuzzy/_ops.py) ---
from ._checks import EPS as EPS

# --- digit benchmarks: digit-sum and concept discovery (symbolic/fuzzy/_digits.py) ---
from ._digits import KLUE as KLUE
from ._digits import AbstractConceptMethod as AbstractConceptMethod
from ._digits import AbstractSumMethod as AbstractSumMethod
from ._digits import Baseline as Baseline
from ._digits import ConceptTask as ConceptTask
from ._digits import DigitData as DigitData
from ._digits import DigitSumResult as DigitSumResult
from ._digits import ExactSum as ExactSum
from ._digits import KLUENet as KLUENet
from ._digits import LTNSum as LTNSum
from ._digits import PlainSum as PlainSum
from ._digits import add_noise as add_noise
from ._digits import concept_purity as concept_purity
from ._digits import digit_data as digit_data
from ._digits import evaluate_concepts as evaluate_concepts
from ._digits import exact_sum_probs as exact_sum_probs
from ._digits import flip_labels as flip_labels
from ._digits import hardest_fraction as hardest_fraction
from ._digits import hidden_pair_task as hidden_pair_task
from ._digits import load_digit_data as load_digit_data
from ._digits import occlude as occlude
from ._digits import shift_images as shift_images
from ._digits import sum_pairs as sum_pairs
from ._digits import train_concepts as train_concepts
from ._digits import train_digit_sum as train_digit_sum
from ._digits import train_steps as train_steps

# --- KLUE: differentiable knowledge unit (symbolic/fuzzy/_klue.py) ---
from ._klue import DKU as DKU
from ._klue import DKUOutput as DKUOutput
from ._klue import RuleTable as RuleTable
from ._klue import concept_classes as concept_classes
from ._klue import distinctness_axioms as distinctness_axioms
from ._klue import distinctness_loss as distinctness_loss
from ._klue import dku_loss as dku_loss
from ._klue import edit_rules as edit_rules
from ._klue import lambda_warmup as lambda_warmup
from ._klue import rule_table as rule_table
from ._ops import and_luk as and_luk
from ._ops import and_min as and_min
from ._ops import and_prod as and_prod
from ._ops import equiv as equiv
from ._ops import implies_godel as implies_godel
from ._ops import implies_goguen as implies_goguen
from ._ops import implies_kleene_dienes as implies_kleene_dienes
from ._ops import implies_luk as implies_luk
from ._ops import implies_reichenbach as implies_reichenbach
from ._ops import implies_sigmoidal as implies_sigmoidal
from ._ops import not_godel as not_godel
from ._ops import not_std as not_std
from ._ops import or_luk as or_luk
from ._ops import or_max as or_max
from ._ops import or_prob_sum as or_prob_sum

# --- first-order layer (symbolic/fuzzy/_quantifiers.py) ---
from ._quantifiers import Labelled as Labelled
from ._quantifiers import connective as connective
from ._quantifiers import diag as diag
from ._quantifiers import exists as exists
from ._quantifiers import forall as forall
from ._quantifiers import predicate as predicate
from ._quantifiers import sat_agg as sat_agg
from ._quantifiers import variable as variable

# --- lookup by name (symbolic/fuzzy/_registry.py) ---
from ._registry import get as get
from ._registry import names as names
