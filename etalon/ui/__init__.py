"""The web app (``etalon ui``, Streamlit) and the desktop planner (``etalon ui --desktop``, Tk).

The logic is plain functions in small modules (``planner``, ``estimators``, ``simulation``,
``recommending``, ``explorer``, ``history``) that call the estimator, simulator, recommendation
and report code; ``pages/`` only draws them. Nothing here is imported by ``etalon`` itself
except ``history``, which the CLI records into, so this package stays import-light.
"""
